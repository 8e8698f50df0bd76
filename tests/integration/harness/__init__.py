"""Loopback fixtures for starttls-proxy integration tests.

pki.TestPKI (openssl CLI), dnsserver.DnsServer (dnslib, UDP+TCP), mxserver.MxServer
(scriptable SMTP/STARTTLS server with faults), proxy.Proxy (the binary under test),
smtpclient.Client (raw SMTP line client), util (TestBase, wait_until, ports).
Run with Debian's /usr/bin/python3 (needs python3-dnslib).
"""

from .dnsserver import DnsServer
from .mxserver import Message, MxServer, Session
from .pki import TestPKI
from .proxy import Proxy, deep_merge, is_asan_build, proxy_binary, to_yaml
from .smtpclient import Client, Closed, Timeout, dot_stuff
from .util import (TestBase, free_port, main, message, proxy_config, reserve_port,
                   split_received, wait_until)

__all__ = ['DnsServer', 'Message', 'MxServer', 'Session', 'TestPKI', 'Proxy', 'deep_merge',
           'is_asan_build', 'proxy_binary', 'to_yaml', 'Client', 'Closed', 'Timeout',
           'dot_stuff', 'TestBase', 'free_port', 'main', 'message', 'proxy_config',
           'reserve_port', 'split_received', 'wait_until']
