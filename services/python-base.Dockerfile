# A Python base image (kafka-lab/python:3.11-bookworm) for hosts that cannot pull python:*-slim:
# Debian's python3 in a virtualenv on PATH, so `python` and `pip` work as in the official image.
# Built by ./run_all.sh --compose images --offline; services/Dockerfile builds FROM it then.
ARG BASE_IMAGE=kafka-lab/debian:bookworm
FROM ${BASE_IMAGE}

RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*

# Behind a TLS-intercepting proxy pip needs the proxy's CA: the bundle named by --ca-bundle
# (or SSL_CERT_FILE / PIP_CERT) joins the system store. Without one the file is empty and dropped.
COPY .lab/images/ca-bundle.pem /usr/local/share/ca-certificates/lab-build-ca.crt
RUN if [ -s /usr/local/share/ca-certificates/lab-build-ca.crt ]; then update-ca-certificates >/dev/null; \
    else rm /usr/local/share/ca-certificates/lab-build-ca.crt; fi

RUN python3 -m venv /opt/python
# pip reads its own certifi bundle unless told: point it (and requests) at the system store.
ENV PATH=/opt/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
