/* Fuzzes command-line framing and parsing: smtp_find_line over the input, then
 * smtp_parse_command and smtp_path_domain on each line (and on the whole input as one
 * line). Aborts when an output breaks the contract in smtp.h. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/wire/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
  if (!ok)
    abort();
}

static bool is_ctl(unsigned char c) {
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

static void check_params(const struct smtp_command *cmd) {
  for (size_t i = 0; i < cmd->nparams; i++) {
    const struct smtp_param *p = &cmd->params[i];
    size_t klen = strnlen(p->key, sizeof p->key);
    size_t vlen = strnlen(p->value, sizeof p->value);
    check(klen > 0 && klen < sizeof p->key && vlen < sizeof p->value);
    for (size_t k = 0; k < klen; k++)
      check((p->key[k] >= 'A' && p->key[k] <= 'Z') ||
            (p->key[k] >= '0' && p->key[k] <= '9') || p->key[k] == '-');
    check(p->has_value == (vlen > 0));
    const struct smtp_param *found = smtp_command_param(cmd, p->key);
    check(found != NULL && found <= p && strcmp(found->key, p->key) == 0);
    /* SMTPUTF8 takes no value; the others it judges need one. */
    if (smtp_param_valid(p) && strcmp(p->key, "SMTPUTF8") == 0)
      check(!p->has_value);
    else if (smtp_param_valid(p) &&
             (strcmp(p->key, "SIZE") == 0 || strcmp(p->key, "NOTIFY") == 0))
      check(vlen > 0);
  }
}

static void check_command(const char *line, size_t len) {
  struct smtp_command cmd;
  int rc = smtp_parse_command(line, len, &cmd);
  check(rc == 0 || rc == SP_E_UNKNOWN_CMD || rc == SP_E_SYNTAX);
  check(cmd.arg >= line && cmd.arg + cmd.arg_len <= line + len);
  size_t plen = strnlen(cmd.path, sizeof cmd.path);
  check(plen <= SMTP_PATH_MAX && cmd.nparams <= SMTP_MAX_PARAMS);
  if (rc == 0)
    for (size_t i = 0; i < len; i++)
      check(!is_ctl((unsigned char)line[i]));
  if (rc != 0 || (cmd.verb != SMTP_VERB_MAIL && cmd.verb != SMTP_VERB_RCPT)) {
    check(plen == 0 && cmd.nparams == 0);
    return;
  }
  check(cmd.verb == SMTP_VERB_MAIL || plen > 0); /* <> is MAIL only */
  check_params(&cmd);
  const char *domain;
  size_t dlen;
  if (plen > 0 && smtp_path_domain(cmd.path, &domain, &dlen) == 0)
    check(dlen > 0 && domain > cmd.path && domain[-1] == '@' &&
          domain + dlen == cmd.path + plen);
  else if (plen > 0)
    check(strcmp(cmd.path, "postmaster") == 0);
}

/* Framing invariants for any max. */
static void check_framing(const uint8_t *data, size_t size, size_t max) {
  size_t ll, used;
  int rc = smtp_find_line((const char *)data, size, max, &ll, &used);
  if (rc == 1) {
    check(ll <= max && used <= size && (used == ll + 1 || used == ll + 2));
    check(data[used - 1] == '\n' && memchr(data, '\n', used - 1) == NULL);
  } else if (rc == 0) {
    check(size <= max + 1 && memchr(data, '\n', size) == NULL);
  } else {
    check(rc == SP_E_TOOLONG && size > max);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  if (size > 0)
    check_framing(data + 1, size - 1, data[0] % 16);
  check_command(in, size);
  size_t pos = 0;
  while (pos < size) {
    size_t ll, used;
    int rc = smtp_find_line(in + pos, size - pos, SMTP_COMMAND_LINE_MAX, &ll, &used);
    if (rc == 0)
      break;
    if (rc == SP_E_TOOLONG) { /* a session answers 500 and skips to the next LF */
      const char *lf = memchr(in + pos, '\n', size - pos);
      if (lf == NULL)
        break;
      pos = (size_t)(lf - in) + 1;
      continue;
    }
    check(rc == 1 && ll <= SMTP_COMMAND_LINE_MAX && used <= size - pos);
    check_command(in + pos, ll);
    pos += used;
  }
  return 0;
}
