"""log.output: syslog. The proxy runs in a private mount namespace whose /dev holds a
datagram socket at /dev/log that this test reads, so nothing of the host's logging is
touched. Asserts what syslog receives: the proxy's lines, tagged starttls-proxy[pid]
with facility mail, without our own date/host prefix."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.proxy import proxy_binary  # noqa: E402
from harness.util import free_port  # noqa: E402

INNER = r'''
import json, os, signal, socket, subprocess, sys, time
binary, config = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('/dev/log')
s.settimeout(10)
p = subprocess.Popen([binary, '-c', config])
got = []
deadline = time.monotonic() + 10
while time.monotonic() < deadline and not any(b'ready' in g for g in got):
    got.append(s.recv(65536))
p.send_signal(signal.SIGTERM)
while time.monotonic() < deadline and not any(b'exiting' in g for g in got):
    got.append(s.recv(65536))
rc = p.wait(10)
print(json.dumps({'rc': rc, 'lines': [g.decode('utf-8', 'replace') for g in got]}))
'''


@unittest.skipUnless(os.geteuid() == 0 and shutil.which('unshare'),
                     'needs root and unshare for a private /dev/log')
class Syslog(unittest.TestCase):
    def test_lines_reach_syslog(self):
        tmp = tempfile.mkdtemp(prefix='sp-syslog-')
        self.addCleanup(shutil.rmtree, tmp, True)
        config = os.path.join(tmp, 'proxy.yaml')
        with open(config, 'w') as f:
            f.write('hostname: proxy.test\nlisten: ["127.0.0.1:%d"]\nstate_dir: %s\n'
                    'mta_sts: {enabled: no}\nlog: {output: syslog}\n'
                    % (free_port(), os.path.join(tmp, 'state')))
        script = os.path.join(tmp, 'inner.py')
        with open(script, 'w') as f:
            f.write(INNER)
        cmd = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
               'mount -t tmpfs tmpfs /dev && exec /usr/bin/python3 "$0" "$1" "$2"',
               script, proxy_binary(), config]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and ('unshare:' in r.stderr or 'mount:' in r.stderr):
            self.skipTest('no private mount namespace here: %s' % r.stderr.strip())
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(out['rc'], 0, out)
        lines = out['lines']
        ready = [l for l in lines if 'ready' in l]
        self.assertTrue(ready, lines)
        # <PRI> = facility mail (2) * 8 + info (6) = 22; then the tag with the pid.
        self.assertRegex(ready[0], r'^<22>.*starttls-proxy\[\d+\]: starttls-proxy \S+ ready$')
        for line in lines:
            self.assertNotIn('proxy.test starttls-proxy[', line)  # no doubled prefix
        self.assertTrue(any('listening on 127.0.0.1:' in l for l in lines), lines)


if __name__ == '__main__':
    unittest.main()
