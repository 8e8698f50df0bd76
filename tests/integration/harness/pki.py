"""A throw-away test PKI made with the openssl CLI.

    pki = TestPKI(tmpdir)                                  # EC P-256 CA (ca_key_type='rsa4096': a big one)
    cert, key = pki.issue('mx1.example.test')             # EC P-256, CA-signed
    cert, key = pki.issue('mx2.example.test', key='rsa')  # RSA 2048
    cert, key = pki.issue('mx3.example.test', expired=True)
    cert, key = pki.issue('mx4.example.test', self_signed=True)
    cert, key = pki.issue('mx5.example.test', wrong_name='other.example.test')
    cert, key = pki.issue('mta-sts.a.test', alt_names=['mta-sts.b.test'])  # more SANs
    pki.ca_file                                            # PEM of the CA, for outbound.tls.ca_file
    chain = pki.chain(cert)                                # leaf + CA in one PEM (MX sends both)
    pki.tlsa(cert, 3, 1, 1); pki.fingerprint(cert, 'pubkey')  # DANE / pinning data

Certificates carry the name as CN and as a subjectAltName dNSName (the wrong name
instead when wrong_name is given), plus any alt_names as further dNSNames. Files
live under DIR/pki/.
"""

import datetime
import hashlib
import os
import subprocess

_OPENSSL = 'openssl'

_CA_CONF = """\
[ ca ]
default_ca = testca
[ testca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
"""


def _run(args, cwd=None):
    proc = subprocess.run([_OPENSSL] + args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError('openssl %s failed (%d): %s' % (
            ' '.join(args), proc.returncode, proc.stderr.decode(errors='replace')))
    return proc.stdout


def _utc(dt):
    return dt.strftime('%y%m%d%H%M%SZ')


class TestPKI:
    """A CA plus server certificates, all in DIR/pki/.

    Attributes: ``dir`` (the pki directory), ``ca_file`` (CA certificate, PEM),
    ``ca_key`` (CA private key, PEM)."""

    __test__ = False  # not a unittest class

    def __init__(self, dir, ca_name='Test CA', ca_key_type='ec'):
        self.dir = os.path.join(dir, 'pki')
        os.makedirs(os.path.join(self.dir, 'newcerts'), exist_ok=True)
        with open(os.path.join(self.dir, 'index.txt'), 'w'):
            pass
        with open(os.path.join(self.dir, 'serial'), 'w') as f:
            f.write('1000\n')
        self.conf = os.path.join(self.dir, 'ca.cnf')
        with open(self.conf, 'w') as f:
            f.write(_CA_CONF.format(dir=self.dir))
        self.ca_key = os.path.join(self.dir, 'ca.key')
        self.ca_file = os.path.join(self.dir, 'ca.pem')
        self._genkey(ca_key_type, self.ca_key)
        _run(['req', '-config', self.conf, '-x509', '-new', '-key', self.ca_key,
              '-sha256', '-days', '3650', '-subj', '/CN=%s' % ca_name,
              '-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
              '-out', self.ca_file])
        self._count = 0

    @staticmethod
    def _genkey(kind, path):
        if kind == 'ec':
            _run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
                  '-out', path])
        elif kind in ('rsa', 'rsa4096'):
            bits = '4096' if kind == 'rsa4096' else '2048'
            _run(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:' + bits,
                  '-out', path])
        else:
            raise ValueError('key must be "ec", "rsa" or "rsa4096", not %r' % (kind,))
        os.chmod(path, 0o600)

    def issue(self, name, key='ec', expired=False, self_signed=False, wrong_name=None,
              alt_names=()):
        """Issues a server certificate for NAME; returns (cert_path, key_path).

        key: 'ec' (P-256), 'rsa' (2048 bits) or 'rsa4096'. expired: validity ended yesterday.
        self_signed: not issued by the CA (its own issuer). wrong_name: the certificate
        names this host instead of NAME (CN and subjectAltName). alt_names: more
        subjectAltName dNSNames after the first."""
        self._count += 1
        base = os.path.join(self.dir, '%s-%d' % (name.replace('*', '_'), self._count))
        key_path, cert_path, csr = base + '.key', base + '.pem', base + '.csr'
        self._genkey(key, key_path)
        cn = wrong_name or name
        san = ','.join('DNS:%s' % n for n in [cn] + list(alt_names))
        exts = ['-addext', 'subjectAltName=%s' % san,
                '-addext', 'extendedKeyUsage=serverAuth',
                '-addext', 'basicConstraints=CA:FALSE']
        if self_signed and not expired:
            _run(['req', '-config', self.conf, '-x509', '-new', '-key', key_path,
                  '-sha256', '-days', '365', '-subj', '/CN=%s' % cn] + exts
                 + ['-out', cert_path])
            return cert_path, key_path
        _run(['req', '-config', self.conf, '-new', '-key', key_path, '-subj',
              '/CN=%s' % cn, '-out', csr])
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)
        extfile = base + '.ext'
        with open(extfile, 'w') as f:
            f.write('subjectAltName=%s\nextendedKeyUsage=serverAuth\n'
                    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature%s\n'
                    % (san, ',keyEncipherment' if key.startswith('rsa') else ''))
        args = ['ca', '-batch', '-config', self.conf, '-notext', '-rand_serial',
                '-startdate', _utc(start), '-enddate', _utc(end),
                '-extfile', extfile, '-in', csr, '-out', cert_path]
        if self_signed:  # expired and self-signed
            args += ['-selfsign', '-keyfile', key_path]
        else:
            args += ['-cert', self.ca_file, '-keyfile', self.ca_key]
        _run(args)
        return cert_path, key_path

    # ---- helpers for pinning and DANE tests -------------------------------------------
    def chain(self, cert_path, *more):
        """Writes CERT_PATH's certificate followed by MORE certificate files (default:
        this PKI's CA) into a new PEM file and returns its path: give it to an MxServer
        as starttls=(chain, key) so the server sends its whole chain (DANE-TA tests)."""
        out = cert_path[:-4] + '-chain.pem' if cert_path.endswith('.pem') else \
            cert_path + '-chain.pem'
        with open(out, 'wb') as f:
            for path in (cert_path,) + (more or (self.ca_file,)):
                with open(path, 'rb') as src:
                    data = src.read()
                f.write(data if data.endswith(b'\n') else data + b'\n')
        return out

    @staticmethod
    def cert_der(cert_path):
        """The certificate as DER bytes."""
        return _run(['x509', '-in', cert_path, '-outform', 'DER'])

    @staticmethod
    def spki_der(cert_path):
        """The certificate's SubjectPublicKeyInfo as DER bytes."""
        pem = _run(['x509', '-in', cert_path, '-pubkey', '-noout'])
        proc = subprocess.run([_OPENSSL, 'pkey', '-pubin', '-outform', 'DER'], input=pem,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode(errors='replace'))
        return proc.stdout

    @classmethod
    def fingerprint(cls, cert_path, of='cert'):
        """SHA-256 hex digest (lower case, no colons) of the certificate ('cert') or of
        its public key ('pubkey')."""
        der = cls.cert_der(cert_path) if of == 'cert' else cls.spki_der(cert_path)
        return hashlib.sha256(der).hexdigest()

    @classmethod
    def tlsa(cls, cert_path, usage=3, selector=1, mtype=1):
        """(usage, selector, mtype, data bytes) for a TLSA record matching CERT_PATH."""
        der = cls.cert_der(cert_path) if selector == 0 else cls.spki_der(cert_path)
        data = {0: lambda b: b, 1: lambda b: hashlib.sha256(b).digest(),
                2: lambda b: hashlib.sha512(b).digest()}[mtype](der)
        return (usage, selector, mtype, data)
