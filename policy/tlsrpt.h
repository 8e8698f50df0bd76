/* TLS-RPT (RFC 8460) pure parts: being written. */
#ifndef SP_POLICY_TLSRPT_H
#define SP_POLICY_TLSRPT_H
#endif
