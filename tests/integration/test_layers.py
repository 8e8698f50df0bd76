#!/usr/bin/python3
"""The folders are the architecture (docs/architecture.md): a layer includes only the
layers below it. Every #include of every C file is checked against this order, top
first, so a new arrow pointing back up fails the suite."""

import os
import re
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))

# Top first. A file may include headers of its own layer and of any layer after it.
LAYERS = ['proxy/daemon', 'proxy/tlsrpt', 'proxy/inbound', 'proxy/outbound',
          'proxy/mtasts', 'proxy/net', 'proxy/config', 'proxy/wire', 'certs',
          'proxy/core', 'policy']
# Pure layers (no loop, no sockets): they never include libuv, c-ares, curl or hiredis.
PURE = ['proxy/config', 'proxy/wire', 'policy']
IO_HEADERS = ('uv.h', 'ares.h', 'curl/curl.h', 'hiredis/hiredis.h')


def layer_of(path):
    for name in sorted(LAYERS, key=len, reverse=True):
        if path.startswith(name + '/'):
            return name
    return None


def sources():
    out = subprocess.run(['git', 'ls-files', 'proxy', 'certs', 'policy'], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return [p for p in out if p.endswith(('.c', '.h'))]


class Layers(unittest.TestCase):

    def test_every_source_file_is_in_a_layer(self):
        self.assertEqual([p for p in sources() if layer_of(p) is None], [])

    def test_no_include_points_up(self):
        up = []
        for path in sources():
            mine = LAYERS.index(layer_of(path))
            with open(os.path.join(ROOT, path)) as f:
                for n, line in enumerate(f, 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if not m:
                        continue
                    target = layer_of(m.group(1))
                    self.assertIsNotNone(target, '%s:%d: %s is not written from the '
                                         'repository root' % (path, n, m.group(1)))
                    if LAYERS.index(target) < mine:
                        up.append('%s:%d includes %s' % (path, n, m.group(1)))
        self.assertEqual(up, [])

    def test_pure_layers_do_no_io(self):
        bad = []
        for path in sources():
            if layer_of(path) not in PURE:
                continue
            with open(os.path.join(ROOT, path)) as f:
                for n, line in enumerate(f, 1):
                    m = re.match(r'\s*#\s*include\s+<([^>]+)>', line)
                    if m and m.group(1) in IO_HEADERS:
                        bad.append('%s:%d includes <%s>' % (path, n, m.group(1)))
        self.assertEqual(bad, [])


if __name__ == '__main__':
    unittest.main(verbosity=2)
