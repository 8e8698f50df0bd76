#!/usr/bin/python3
"""Dropping root after the listeners are bound (`user:`): the process runs as that
user with no capabilities left, the state directory and its sqlite files are the
user's, delivery and reload still work, an unknown user stops the start-up with a
clear error, and a restart under the systemd unit's capability set reopens the
state the first run handed to the user. Needs root (skipped otherwise)."""

import grp
import os
import pwd
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, message, proxy_binary, wait_until  # noqa: E402
from harness.proxy import Proxy  # noqa: E402

USER = 'nobody'
UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'packaging', 'starttls-proxy.service')


def proc_status(pid):
    """/proc/PID/status as a dict of key -> list of fields."""
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            k, _, v = line.partition(':')
            out[k] = v.split()
    return out


def unit_capabilities():
    """The CapabilityBoundingSet of the shipped unit, as setpriv names ('net_bind_service')."""
    with open(UNIT) as f:
        m = re.search(r'^CapabilityBoundingSet=(.+)$', f.read(), re.M)
    assert m, 'no CapabilityBoundingSet in %s' % UNIT
    return [c.lower().replace('cap_', '', 1) for c in m.group(1).split()]


class Privileges(TestBase):
    start_proxy = False

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest('needs root')
        self.pw = pwd.getpwnam(USER)
        super().setUp()
        # The dropped process rereads its config, CA file and store on SIGHUP.
        os.chmod(self.tmpdir, 0o755)
        os.chmod(self.pki.dir, 0o755)

    def start(self, extra=None, binary=None):
        p = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                  extra=extra, start=False)
        if binary:
            p.binary = binary
        self.proxy = p
        self.addCleanup(self._stop_proxy, p)
        p.start()
        return p

    def assertDropped(self, p, since=0):
        """P (started when its log was SINCE bytes long) runs as USER."""
        uid, gid = str(self.pw.pw_uid), str(self.pw.pw_gid)
        # The port accepts as soon as it is bound, which is before the drop.
        rx = re.compile(r'running as user %s \(uid=%s gid=%s\)[^\n]*\n.*'
                        r'starttls-proxy \S+ ready' % (USER, uid, gid), re.S)
        wait_until(lambda: rx.search(p.log_text()[since:]), 10,
                   lambda: 'no drop logged; log:\n' + p.log_text()[since:])
        st = proc_status(p.pid)
        self.assertEqual(st['Uid'], [uid] * 4, 'real, effective, saved, fs uid')
        self.assertEqual(st['Gid'], [gid] * 4, 'real, effective, saved, fs gid')
        want = sorted(str(g) for g in os.getgrouplist(USER, self.pw.pw_gid))
        self.assertEqual(sorted(st['Groups']), want, 'supplementary groups')
        for cap in ('CapPrm', 'CapEff', 'CapAmb'):
            self.assertEqual(int(st[cap][0], 16), 0, '%s not empty' % cap)

    def assertStateOwned(self, p):
        for name in ['.'] + [f for f in os.listdir(p.state_dir)
                             if f.startswith('policies.sqlite3')]:
            st = os.lstat(os.path.join(p.state_dir, name))
            self.assertEqual((st.st_uid, st.st_gid), (self.pw.pw_uid, self.pw.pw_gid),
                             '%s/%s owned by %s:%s' % (p.state_dir, name,
                                                       pwd.getpwuid(st.st_uid).pw_name,
                                                       grp.getgrgid(st.st_gid).gr_name))

    def deliver(self, subject):
        out = self.send('rcpt@example.test', message(subject))
        self.assertReply(out['data'], 250)
        self.mx1.wait_for(lambda: any(subject.encode() in m.data for m in self.mx1.messages))

    def test_drop_to_user(self):
        """user: nobody → Uid/Gid lines all nobody's, its groups only, no capability
        left; the state directory and sqlite files are nobody's; a message is
        delivered; a reload (config, CA file and store reopened as nobody) works."""
        p = self.start({'user': USER})
        self.assertDropped(p)
        self.assertStateOwned(p)
        self.deliver('dropped')
        p.reload()
        p.wait_log(r'configuration reloaded')
        self.assertNotIn('reload of', p.log_text())
        self.deliver('after-reload')
        self.assertDropped(p)

    def test_unknown_user_refuses_to_start(self):
        """user: an unknown name → exit status 1 at start-up, and the log says which
        user and why; nothing keeps listening."""
        p = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                  extra={'user': 'sp-no-such-user'}, start=False)
        r = subprocess.run([proxy_binary(), '-c', p.config_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode('utf-8', 'replace')
        self.assertEqual(r.returncode, 1, out)
        self.assertRegex(out, r'error: user sp-no-such-user: no such user', out)
        self.assertNotRegex(out, r'ready|AddressSanitizer|runtime error:', out)

    def test_restart_with_unit_capabilities(self):
        """Started the way the systemd unit starts it (root with only the unit's
        CapabilityBoundingSet, no_new_privs), stopped and started again: the second
        start reopens the store the first run gave to nobody, drops again and
        delivers."""
        caps = unit_capabilities()
        wrapper = os.path.join(self.tmpdir, 'as-unit.sh')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\nexec setpriv --no-new-privs --bounding-set -all,%s %s "$@"\n'
                    % (','.join('+' + c for c in caps), proxy_binary()))
        os.chmod(wrapper, 0o755)
        p = self.start({'user': USER}, binary=wrapper)
        self.assertDropped(p)
        self.deliver('unit-first')
        p.stop()
        self.assertStateOwned(p)
        since = len(p.log_text())
        p.start()
        self.assertDropped(p, since)
        self.deliver('unit-second')
        self.assertNotIn('readonly database', p.log_text())


if __name__ == '__main__':
    main()
