"""Test certificates made with the `openssl` CLI at test time (EC P-256, valid two days).

    pki = Pki(tmp_dir)                      # a CA: pki.ca_cert, pki.ca_key
    srv = pki.issue("server", "sidemux test server", sans=["DNS:localhost", "IP:127.0.0.1"],
                    usage="serverAuth")    # -> Cert(cert, key, serial, subject)
    cli = pki.issue("client", "sidemux test client", usage="clientAuth")

Every file lives in the directory given to Pki; nothing is written elsewhere.
"""

import os
import subprocess

OPENSSL = os.environ.get("OPENSSL_BIN", "openssl")
DAYS = "2"


def _openssl(*args, cwd=None):
    proc = subprocess.run([OPENSSL, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def new_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o600)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Cert:
    def __init__(self, cert, key, serial, subject):
        self.cert = cert  # PEM file paths
        self.key = key
        self.serial = serial  # int
        self.subject = subject  # the CN

    @property
    def serial_hex(self):
        """As python's ssl getpeercert() shows it: upper-case hex, even length."""
        h = format(self.serial, "X")
        return h if len(h) % 2 == 0 else "0" + h

    def __repr__(self):
        return f"<Cert CN={self.subject!r} serial={self.serial_hex} {self.cert}>"


class Pki:
    """A self-signed CA in `directory` that issues leaf certificates."""

    _next_serial = 0x1000

    def __init__(self, directory, name="ca", cn="sidemux test CA"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca_key = new_key(os.path.join(self.dir, f"{name}.key"))
        self.ca_cert = os.path.join(self.dir, f"{name}.crt")
        _openssl("req", "-x509", "-new", "-key", self.ca_key, "-subj", f"/CN={cn}", "-days", DAYS,
                 "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.ca_cert)

    def issue(self, name, cn, sans=(), usage="serverAuth", serial=None):
        """A leaf certificate signed by this CA; usage is the extendedKeyUsage value."""
        Pki._next_serial += 1
        serial = serial if serial is not None else Pki._next_serial
        key = new_key(os.path.join(self.dir, f"{name}.key"))
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.crt")
        ext = os.path.join(self.dir, f"{name}.ext")
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={usage}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-set_serial", str(serial), "-days", DAYS, "-sha256", "-extfile", ext, "-out", cert)
        return Cert(cert, key, serial, cn)
