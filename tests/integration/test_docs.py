#!/usr/bin/python3
"""The documentation an admin reads matches the binary: every key the configuration
parser accepts (`starttls-proxy --config-keys`) is in the configuration reference
(docs/configuration.md) and in the manual page starttls-proxy.yaml(5), and neither
documents a key the parser does not know; both manual pages render with groff without
a warning, and `make install` puts them where man finds them."""

import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.proxy import proxy_binary  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
REFERENCE = os.path.join(ROOT, 'docs', 'configuration.md')
MAN5 = os.path.join(ROOT, 'docs', 'man', 'starttls-proxy.yaml.5')
MAN8 = os.path.join(ROOT, 'docs', 'man', 'starttls-proxy.8')


def parser_keys():
    out = subprocess.run([proxy_binary(), '--config-keys'], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    keys = out.split()
    assert len(keys) > 40, keys
    return keys


def reference_keys():
    """The first column of every table row: `key`."""
    keys = []
    with open(REFERENCE) as f:
        for line in f:
            m = re.match(r'^\| `([a-z_.]+)` \|', line)
            if m:
                keys.append(m.group(1))
    return keys


def man5_keys():
    """Every .TP tag of the key sections: `.B key`."""
    keys, tag = [], False
    with open(MAN5) as f:
        for line in f:
            line = line.rstrip('\n')
            if tag:
                m = re.match(r'^\.B ([a-z_.]+)$', line)
                if m:
                    keys.append(m.group(1))
            tag = line == '.TP'
    return keys


class Docs(unittest.TestCase):

    def test_reference_covers_parser(self):
        documented = reference_keys()
        self.assertEqual(len(documented), len(set(documented)), 'a key documented twice')
        keys = parser_keys()
        self.assertEqual(sorted(set(keys) - set(documented)), [],
                         'keys the parser accepts but docs/configuration.md omits')
        self.assertEqual(sorted(set(documented) - set(keys)), [],
                         'keys docs/configuration.md documents but the parser refuses')

    def test_man5_covers_parser(self):
        documented = man5_keys()
        keys = parser_keys()
        self.assertEqual(sorted(set(keys) - set(documented)), [],
                         'keys starttls-proxy.yaml(5) omits')
        self.assertEqual(sorted(set(documented) - set(keys)), [],
                         'keys starttls-proxy.yaml(5) documents but the parser refuses')

    def test_man_pages_render_without_warnings(self):
        for page in (MAN8, MAN5):
            with self.subTest(page=os.path.basename(page)):
                p = subprocess.run(['groff', '-ww', '-man', '-Tutf8', '-z', page],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual((p.returncode, p.stderr), (0, ''))
                p = subprocess.run(['man', '-l', page], capture_output=True, text=True,
                                   timeout=30, env=dict(os.environ, MANWIDTH='80',
                                                        MAN_KEEP_STDERR='1'))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr, '')
                self.assertIn('starttls-proxy', p.stdout)

    def test_usage_names_every_command_of_the_man_page(self):
        usage = subprocess.run([proxy_binary(), '--help'], capture_output=True, text=True,
                               timeout=30).stdout
        for word in ('--check-config', 'check DOMAIN', 'tlsrpt send', 'policy show|purge',
                     '--config-keys', '--version'):
            self.assertIn(word, usage)
        page = open(MAN8).read().replace('\\-', '-')
        for word in ('--check-config', 'tlsrpt send', '--config-keys', 'SIGHUP', 'SIGTERM'):
            self.assertIn(word, page)

    def test_make_install_places_the_pages(self):
        build = os.path.dirname(proxy_binary())
        with tempfile.TemporaryDirectory() as dest:
            subprocess.run(['cmake', '--install', build, '--prefix', dest],
                           capture_output=True, timeout=120, check=True)
            for rel in ('share/man/man8/starttls-proxy.8',
                        'share/man/man5/starttls-proxy.yaml.5', 'bin/starttls-proxy'):
                self.assertTrue(os.path.exists(os.path.join(dest, rel)), rel)
            p = subprocess.run(['man', '-M', os.path.join(dest, 'share/man'), '-w',
                                'starttls-proxy.yaml'], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
