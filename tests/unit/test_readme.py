"""The README's configuration table against the one table the services read (config.ENV_DEFAULTS)."""
from __future__ import annotations

import re

from lab import paths
from services.common.config import ENV_DEFAULTS

ROW = re.compile(r"\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \| ([^|]+) \|")


def documented() -> dict[str, str]:
    """variable -> the default column as written, for every row of the README's tables that names variables."""
    rows = {}
    for line in (paths.ROOT / "README.md").read_text().splitlines():
        m = ROW.match(line)
        if m:
            names = re.findall(r"`([A-Z_]+)`", m.group(1))
            defaults = [d.strip() for d in m.group(2).split(" / ")]
            for i, name in enumerate(names):
                rows[name] = defaults[i] if len(defaults) == len(names) else defaults[0]
    return rows


def test_every_variable_the_services_read_is_in_the_readme_with_its_default():
    rows = documented()
    assert set(ENV_DEFAULTS) <= set(rows), sorted(set(ENV_DEFAULTS) - set(rows))
    for name, default in ENV_DEFAULTS.items():
        written = rows[name]
        if default:
            assert written == f"`{default}`", f"{name}: README says {written}, the code {default!r}"
        else:
            # Empty in the code: the README says what empty means (unset, the trust store, PLAIN with SASL).
            assert not written.startswith("``"), name
