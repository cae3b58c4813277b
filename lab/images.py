"""./run_all.sh --compose images [--offline]: every image docker-compose.yml needs.

Without --offline it is `docker compose build` (the official base images are pulled).
With --offline nothing comes from Docker Hub: a Debian base is bootstrapped from Debian's
packages, and the project's own images are built on it under the project's own tags
(never the official names): Python from Debian (then pip from PyPI), Kafka from the jars
the embedded broker resolves from Maven Central, Prometheus from Debian. The tags are
written to `.env` (git-ignored), which plain `docker compose` and `docker-compose` read,
so `docker compose up --build` uses them from then on. The Debian base is bootstrapped only
when missing (`--rebuild` redoes it); the rest is rebuilt, quickly from Docker's layer cache.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab import paths
from lab.broker import ensure_jars, kafka_version
from lab.stack import StackError

DEBIAN_SUITE = "bookworm"
BASE_IMAGE = f"kafka-lab/debian:{DEBIAN_SUITE}"
# Each offline image: the compose variable that names it, its tag, its Dockerfile.
OFFLINE_IMAGES = {
    "PYTHON_IMAGE": (f"kafka-lab/python:3.11-{DEBIAN_SUITE}", "services/python-base.Dockerfile"),
    "KAFKA_IMAGE": (f"kafka-lab/kafka:{kafka_version()}", "kafka/image/Dockerfile"),
    "PROMETHEUS_IMAGE": (f"kafka-lab/prometheus:{DEBIAN_SUITE}", "monitoring/Dockerfile"),
}
ENV_FILE = paths.ROOT / ".env"
CA_BUNDLE = paths.ROOT / ".lab" / "images" / "ca-bundle.pem"   # in the build context; see .dockerignore
# Trimmed from the bootstrapped folder before import: nothing in the images reads them.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives",
        "var/lib/apt/lists")


def docker(*args: str, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["docker", *args], text=True, capture_output=capture, **kw)
    except FileNotFoundError:
        raise StackError("docker not found: run scripts/install-docker.sh (Debian/Ubuntu), "
                         "or install Docker Engine with the Compose plugin") from None


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag).returncode == 0


def ca_bundle(option: str | None, environ=os.environ) -> Path | None:
    """The CA bundle the builds should trust: --ca-bundle, else SSL_CERT_FILE, else PIP_CERT."""
    for source, value in (("--ca-bundle", option), ("SSL_CERT_FILE", environ.get("SSL_CERT_FILE")),
                          ("PIP_CERT", environ.get("PIP_CERT"))):
        if value:
            path = Path(value)
            if not path.is_file():
                raise StackError(f"{source} names {value}, which is not a file")
            return path
    return None


def bootstrap_base(progress=print, mirror: str | None = None) -> None:
    """The Debian base image, from Debian's packages: debootstrap into a folder, then docker import."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise StackError("building the Debian base image needs root (debootstrap): run this as root")
    if shutil.which("debootstrap") is None and shutil.which("apt-get"):
        progress("[images] installing debootstrap from Debian's packages")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which("debootstrap") is None:
        raise StackError("debootstrap not found: apt-get install debootstrap (it builds the Debian base image)")
    mirror = mirror or os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    work = Path(tempfile.mkdtemp(prefix="kafka-lab-rootfs-"))
    try:
        progress(f"[images] {BASE_IMAGE}: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} (about a minute)")
        rootfs = work / "rootfs"
        res = subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError(f"debootstrap failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}")
        for rel in TRIM:
            for child in (rootfs / rel).glob("*"):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        res = docker("import", "--change", 'CMD ["/bin/bash"]',
                     "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--change", "LABEL org.opencontainers.image.source=kafka-lab-offline",
                     "-", BASE_IMAGE, stdin=tar.stdout)
        tar.stdout.close()
        tar.wait()
        if res.returncode != 0 or tar.returncode != 0:
            raise StackError(f"docker import of the Debian base failed: {res.stderr.strip()[-2000:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(tag: str, dockerfile: str, progress=print, **build_args: str) -> None:
    """docker build from the repository root; on failure the message names the failing step."""
    progress(f"[images] {tag}: docker build -f {dockerfile}")
    # --force-rm: the legacy builder keeps a failed step's container otherwise.
    argv = ["build", "--force-rm", "-f", dockerfile, "-t", tag,
            *[a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")], "."]
    # The legacy builder prints "Step N/M : ..." per step; BuildKit "#N [stage k/m] ...". Either way
    # the output is kept, so a failure can name the step it stopped at.
    proc = subprocess.Popen(["docker", *argv], cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "DOCKER_BUILDKIT": _buildkit()})
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if os.environ.get("LAB_IMAGES_VERBOSE"):
            print("    | " + line, end="", flush=True)
    if proc.wait() != 0:
        steps = [ln for ln in lines if ln.startswith("Step ") or " [" in ln and ln.startswith("#")]
        failing = steps[-1] if steps else "(no step started)"
        raise StackError(f"building {tag} ({dockerfile}) failed at: {failing}\n" + "\n".join(lines[-25:]))


def _buildkit() -> str:
    # The docker CLI builds with BuildKit only through the buildx plugin, which Debian's
    # docker.io lacks; its legacy builder needs nothing more. (Compose builds with BuildKit itself.)
    return "1" if docker("buildx", "version").returncode == 0 else "0"


def write_env_file(values: dict[str, str], env_file: Path = ENV_FILE) -> None:
    """Set these variables in .env (compose's own file beside docker-compose.yml), keeping other lines."""
    kept = []
    if env_file.exists():
        kept = [ln for ln in env_file.read_text().splitlines()
                if ln.split("=", 1)[0].strip() not in values and "offline images" not in ln]
    lines = [*kept,
             "# offline images (./run_all.sh --compose images --offline); delete these lines for the official ones",
             *[f"{k}={v}" for k, v in values.items()]]
    env_file.write_text("\n".join(lines) + "\n")


def build_offline(ca: Path | None, rebuild: bool = False, progress=print) -> dict[str, str]:
    """Build every image without Docker Hub; returns {compose variable: tag}."""
    ensure_jars(progress=progress)
    CA_BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    CA_BUNDLE.write_bytes(ca.read_bytes() if ca else b"")
    if ca:
        digest = hashlib.sha256(CA_BUNDLE.read_bytes()).hexdigest()[:12]
        progress(f"[images] trusting the CA bundle {ca} (sha256 {digest})")
    if rebuild or not image_exists(BASE_IMAGE):
        bootstrap_base(progress)
    else:
        progress(f"[images] {BASE_IMAGE}: present (--rebuild bootstraps it again)")
    for tag, dockerfile in OFFLINE_IMAGES.values():
        build(tag, dockerfile, progress, BASE_IMAGE=BASE_IMAGE)
    tags = {var: tag for var, (tag, _) in OFFLINE_IMAGES.items()}
    write_env_file(tags)
    progress(f"[images] wrote {ENV_FILE.name}: {', '.join(f'{k}={v}' for k, v in tags.items())}")
    return tags


def effective_images(environ=None, env_file: Path = ENV_FILE) -> dict[str, str]:
    """{variable: image} compose will use: the compose file's default, then .env, then the environment."""
    e = os.environ if environ is None else environ
    compose = (paths.ROOT / "docker-compose.yml").read_text()
    out = {var: re.search(r"\$\{%s:-([^}]+)\}" % var, compose).group(1) for var in OFFLINE_IMAGES}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep and k.strip() in out:
                out[k.strip()] = v.strip()
    out.update({k: e[k] for k in out if e.get(k)})
    return out


def ensure_images(progress=print) -> dict[str, str]:
    """Every base image compose needs, present: pulled where Docker Hub answers, else built offline."""
    images = effective_images()
    missing = [tag for tag in images.values() if not image_exists(tag)]
    unpulled = [tag for tag in missing if docker("pull", "-q", tag).returncode != 0]
    if unpulled:
        progress(f"[images] {', '.join(unpulled)} neither present nor pullable: building the offline images")
        return build_offline(ca_bundle(None), progress=progress)
    return images


def main(rest: list[str], stack) -> int:
    p = argparse.ArgumentParser(prog="./run_all.sh --compose images", description=__doc__.split("\n\n")[0])
    p.add_argument("--offline", action="store_true",
                   help="build every image from Debian's packages, PyPI and Maven Central (no Docker Hub)")
    p.add_argument("--ca-bundle", metavar="FILE",
                   help="a CA bundle the image builds trust (default: SSL_CERT_FILE, then PIP_CERT)")
    p.add_argument("--rebuild", action="store_true", help="bootstrap the Debian base again")
    args = p.parse_args(rest)
    if getattr(stack, "kind", None) != "compose":
        raise StackError("images are for the compose stack: ./run_all.sh --compose images [--offline]")
    stack.require_docker()
    if args.offline:
        build_offline(ca_bundle(args.ca_bundle), rebuild=args.rebuild, progress=stack.progress)
    stack.build()
    sizes = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout.splitlines()
    for line in sizes:
        if line.startswith("kafka-lab"):
            stack.progress(f"[images] {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], None))
