/* The session's commands as a table (OpenSMTPD's commands[]): each row names a verb,
 * the states it is allowed in (else 503), its argument checks (501/555 and the
 * like) and what it does. SMTP and LMTP share the rows; where they differ (the
 * greeting verb, what a recipient and DATA set going) the session's protocol column,
 * struct session_proto, says so. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/inbound/session_internal.h"

/* What a row's check found, for its proceed step. */
struct cmd_args {
  char params[600];             /* the ESMTP parameters passed on, "KEY=VALUE ..." */
  char path[SMTP_PATH_MAX + 1]; /* RCPT: the recipient relayed */
  char domain[256];             /* RCPT: the destination, lower-case, no trailing dot */
};

struct session_cmd {
  enum smtp_verb verb;
  const char *usage; /* takes no argument: else this 501 text, before anything else */
  unsigned states;   /* the states it is allowed in (STATE() bits); 0: any */
  const char *seq;   /* the 503 text in any other state */
  const char *seq0;  /* the 503 text before HELO/EHLO, when it differs */
  /* Argument checks: false when refused (the check wrote the reply). */
  bool (*check)(struct session *s, const struct smtp_command *cmd, struct cmd_args *a);
  void (*proceed)(struct session *s, const struct smtp_command *cmd,
                  const struct cmd_args *a);
};

#define STATE(x) (1u << SESSION_##x)

const char *session__proto_name(const struct session *s) {
  return s->esmtp ? s->proto->name : "SMTP";
}

void session__reject_rcpt(struct session *s, const char *path, int code,
                          const char *enh, const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  log_as(
      LOG_PROG_SMTPD, LOG_INFO, s->txn.qid,
      "reject: RCPT from unknown[%s]: %d %s %s; from=<%s> to=<%s> proto=%s helo=<%s>",
      s->client_ip, code, enh, text, s->txn.from, path, session__proto_name(s),
      s->helo);
  session__reply(s, code, enh, "%s", text);
}

/* ---- checks ------------------------------------------------------------------------ */

/* RFC 2033 §4.1: an LMTP server answers LHLO only, and never HELO or EHLO. */
static bool check_hello(struct session *s, const struct smtp_command *cmd,
                        struct cmd_args *a) {
  (void)a;
  if (s->proto->hello_verbs & (1u << cmd->verb))
    return true;
  session__reply(s, 500, "5.5.1", "Error: command not recognized%s",
                 s->proto->hello_hint);
  return false;
}

/* Keeps the ESMTP parameters we pass on; anything else was never advertised (555). A
 * value its RFC does not allow, or a parameter given twice, is a syntax error (501). */
static bool check_params(struct session *s, const struct smtp_command *cmd,
                         const char *const *allowed, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < cmd->nparams; i++) {
    const struct smtp_param *p = &cmd->params[i];
    bool ok = false;
    for (const char *const *k = allowed; *k; k++)
      ok = ok || strcasecmp(p->key, *k) == 0;
    if (!ok || !s->esmtp) {
      session__reply(s, 555, "5.5.4", "Unsupported option: %s", p->key);
      return false;
    }
    if (!smtp_param_valid(p) || smtp_command_param(cmd, p->key) != p) {
      session__reply(s, 501, "5.5.4", "Bad %s parameter syntax%s", p->key,
                     smtp_command_param(cmd, p->key) != p ? ": given twice" : "");
      return false;
    }
    n += (size_t)snprintf(out + n, cap - n, "%s%s%s%s", n ? " " : "", p->key,
                          p->has_value ? "=" : "", p->value);
    if (n >= cap) {
      session__reply(s, 501, "5.5.4", "Too many parameters");
      return false;
    }
  }
  return true;
}

/* RFC 6531 3.4: a non-ASCII address only in a transaction that declared SMTPUTF8. */
static bool utf8_path(const char *path) {
  for (const unsigned char *p = (const unsigned char *)path; *p; p++)
    if (*p >= 0x80)
      return true;
  return false;
}

static const char utf8_undeclared[] = "Must declare SMTPUTF8 to send unicode address";

static bool check_mail(struct session *s, const struct smtp_command *cmd,
                       struct cmd_args *a) {
  static const char *const allowed[] = {"SIZE", "BODY",  "SMTPUTF8",
                                        "RET",  "ENVID", NULL};
  if (!check_params(s, cmd, allowed, a->params, sizeof a->params))
    return false;
  if (utf8_path(cmd->path) && !smtp_command_param(cmd, "SMTPUTF8")) {
    session__reply(s, 553, "5.6.7", "%s", utf8_undeclared);
    return false;
  }
  const struct smtp_param *size = smtp_command_param(cmd, "SIZE");
  uint64_t max = s->rt->cfg->max_message_size;
  if (size && max && strtoull(size->value, NULL, 10) > max) {
    session__reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
    return false;
  }
  return true;
}

/* The destination of a recipient: lower-case, without a trailing dot. */
static bool check_rcpt_domain(struct session *s, const char *path, char *out,
                              size_t cap) {
  const char *d;
  size_t len;
  if (smtp_path_domain(path, &d, &len) < 0) {
    session__reject_rcpt(s, path, 550, "5.1.1",
                         "<%s>: Recipient address rejected: no domain (this "
                         "relay has no local mailboxes)",
                         path);
    return false;
  }
  if (len > 0 && d[len - 1] == '.')
    len--;
  if (len == 0 || len >= cap || d[0] == '[') {
    session__reject_rcpt(
        s, path, 550, "5.1.2", "<%s>: Recipient address rejected: %s", path,
        d[0] == '[' ? "address literals are not relayed" : "bad domain");
    return false;
  }
  for (size_t i = 0; i < len; i++)
    out[i] = (char)((d[i] >= 'A' && d[i] <= 'Z') ? d[i] + 32 : d[i]);
  out[len] = '\0';
  return true;
}

static bool check_rcpt(struct session *s, const struct smtp_command *cmd,
                       struct cmd_args *a) {
  static const char *const allowed[] = {"NOTIFY", "ORCPT", NULL};
  if (!check_params(s, cmd, allowed, a->params, sizeof a->params))
    return false;
  if (utf8_path(cmd->path) && !s->txn.smtputf8) {
    session__reject_rcpt(s, cmd->path, 553, "5.6.7", "<%s>: %s", cmd->path,
                         utf8_undeclared);
    return false;
  }
  /* RFC 5321 4.5.1: <postmaster> without a domain is this server's postmaster, the
   * mailbox at our hostname (as the TLS reports' default contact). */
  const char *host = s->rt->cfg->hostname;
  if (strcmp(cmd->path, "postmaster") != 0)
    memcpy(a->path, cmd->path, sizeof a->path);
  else if (strlen(host) + sizeof "postmaster@" <= sizeof a->path)
    snprintf(a->path, sizeof a->path, "postmaster@%s", host);
  else
    snprintf(a->path, sizeof a->path, "%s", cmd->path); /* refused: no domain */
  return check_rcpt_domain(s, a->path, a->domain, sizeof a->domain);
}

/* ---- proceed ----------------------------------------------------------------------- */

static void do_hello(struct session *s, const struct smtp_command *cmd,
                     const struct cmd_args *a) {
  (void)a;
  session__txn_reset(s); /* an open MX transaction is reset there (RSET) */
  snprintf(s->helo, sizeof s->helo, "%.*s", (int)cmd->arg_len, cmd->arg);
  s->esmtp = cmd->verb != SMTP_VERB_HELO;
  session__set_state(s, SESSION_IDLE);
  const struct config *cfg = s->rt->cfg;
  if (!s->esmtp) {
    session__reply(s, 250, "", "%s", cfg->hostname);
    return;
  }
  char size[40] = "SIZE";
  if (cfg->max_message_size)
    snprintf(size, sizeof size, "SIZE %llu", (unsigned long long)cfg->max_message_size);
  session__reply(s, 250, "",
                 "%s\nPIPELINING\n%s\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\nDSN",
                 cfg->hostname, size);
}

static void do_mail(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  session__txn_reset(s);
  if (++s->ntxn == 1)
    snprintf(s->txn.qid, sizeof s->txn.qid, "%s", s->id);
  else
    snprintf(s->txn.qid, sizeof s->txn.qid, "%s%X", s->id, s->ntxn);
  snprintf(s->txn.from, sizeof s->txn.from, "%s", cmd->path);
  snprintf(s->txn.mail_params, sizeof s->txn.mail_params, "%s", a->params);
  s->txn.smtputf8 = smtp_command_param(cmd, "SMTPUTF8") != NULL;
  const struct smtp_param *body = smtp_command_param(cmd, "BODY");
  s->txn.body_8bit = body && strcasecmp(body->value, "8BITMIME") == 0;
  s->txn.started_ms = uv_now(s->conn.tcp.loop);
  session__set_state(s, SESSION_MAIL);
  session__reply(s, 250, "2.1.0", "Ok");
}

static void do_rcpt(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  session__txn_rcpt(s, a->path, a->params, a->domain);
}

static void do_data(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  if (s->state == SESSION_MAIL) /* RFC 5321 §3.3: every recipient was refused */
    session__reply(s, 554, "5.5.1", "Error: no valid recipients");
  else
    session__txn_data(s);
}

static void do_rset(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  session__txn_reset(s); /* an open MX transaction is reset there (RSET) */
  if (s->state != SESSION_GREETING)
    session__set_state(s, SESSION_IDLE);
  session__reply(s, 250, "2.0.0", "Ok");
}

static void do_noop(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  session__reply(s, 250, "2.0.0", "Ok");
}

static void do_vrfy(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  session__reply(s, 252, "2.5.2",
                 "Cannot VRFY user, but will accept message and attempt delivery");
}

static void do_help(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  session__reply(s, 214, "2.0.0", "starttls-proxy: see RFC 5321");
}

static void do_quit(struct session *s, const struct smtp_command *cmd,
                    const struct cmd_args *a) {
  (void)cmd;
  (void)a;
  session__reply(s, 221, "2.0.0", "Bye");
  session__set_state(s, SESSION_QUIT);
  session__close(s, true);
}

/* EXPN, STARTTLS and AUTH have no row: not offered (502). BDAT is cmd_bdat's. */
static const struct session_cmd commands[] = {
    {SMTP_VERB_HELO, NULL, 0, NULL, NULL, check_hello, do_hello},
    {SMTP_VERB_EHLO, NULL, 0, NULL, NULL, check_hello, do_hello},
    {SMTP_VERB_LHLO, NULL, 0, NULL, NULL, check_hello, do_hello},
    {SMTP_VERB_MAIL, NULL, STATE(IDLE), "Error: nested MAIL command",
     "Error: send HELO/EHLO first", check_mail, do_mail},
    {SMTP_VERB_RCPT, NULL, STATE(MAIL) | STATE(RCPT), "Error: need MAIL command", NULL,
     check_rcpt, do_rcpt},
    {SMTP_VERB_DATA, "Syntax: DATA", STATE(MAIL) | STATE(RCPT),
     "Error: need RCPT command", NULL, NULL, do_data},
    {SMTP_VERB_RSET, NULL, 0, NULL, NULL, NULL, do_rset},
    {SMTP_VERB_NOOP, NULL, 0, NULL, NULL, NULL, do_noop},
    {SMTP_VERB_VRFY, NULL, 0, NULL, NULL, NULL, do_vrfy},
    {SMTP_VERB_HELP, NULL, 0, NULL, NULL, NULL, do_help},
    {SMTP_VERB_QUIT, NULL, 0, NULL, NULL, NULL, do_quit},
};

/* RFC 3030: a BDAT command is followed by exactly chunk-size octets of message, sent
 * without waiting for a reply. We offer no CHUNKING, but those octets must never be read
 * as commands (a message holding "MAIL FROM:..." would be run: command injection). A
 * readable size within limits.message_size is skipped exactly, which keeps the session
 * in step with the client; otherwise we cannot know where the chunk ends, so we close. */
static void cmd_bdat(struct session *s, const struct smtp_command *cmd, int rc) {
  uint64_t max = s->rt->cfg->max_message_size, size = 0;
  bool readable = rc == 0;
  for (size_t i = 0; readable && i < cmd->arg_len && cmd->arg[i] != ' '; i++) {
    unsigned d = (unsigned)(cmd->arg[i] - '0');
    readable = size <= (UINT64_MAX - d) / 10;
    size = size * 10 + d;
  }
  if (!readable || (max && size > max)) {
    log_msg(LOG_WARNING, s->id,
            "BDAT without CHUNKING from %s: chunk size %s: connection closed",
            s->client_ip, readable ? "over limits.message_size" : "unreadable");
    session__reply(s, 421, "4.5.0", "%s Error: BDAT without CHUNKING, closing",
                   s->rt->cfg->hostname);
    session__close(s, true);
    return;
  }
  log_msg(LOG_INFO, s->id, "BDAT without CHUNKING from %s: %llu bytes discarded",
          s->client_ip, (unsigned long long)size);
  s->skip_bytes = size;
  session__reply(s, 503, "5.5.1", "Error: BDAT without CHUNKING: chunk discarded");
}

static const struct session_cmd *cmd_find(enum smtp_verb verb) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i].verb == verb)
      return &commands[i];
  return NULL;
}

static void cmd_run(struct session *s, const struct session_cmd *c,
                    const struct smtp_command *cmd) {
  struct cmd_args a;
  if (c->usage && cmd->arg_len > 0) {
    session__reply(s, 501, "5.5.4", "%s", c->usage);
    return;
  }
  if (c->states && !(c->states & (1u << s->state))) {
    const char *text = s->state == SESSION_GREETING && c->seq0 ? c->seq0 : c->seq;
    session__reply(s, 503, "5.5.1", "%s", text);
    return;
  }
  if (c->check && !c->check(s, cmd, &a))
    return;
  c->proceed(s, cmd, &a);
}

void session__command(struct session *s, const char *line, size_t len) {
  struct smtp_command cmd;
  int rc = smtp_parse_command(line, len, &cmd);
  if (log_enabled(LOG_DEBUG))
    log_msg(LOG_DEBUG, s->id, "< %s: %.*s", s->client_ip, (int)(len > 200 ? 200 : len),
            line);
  /* Whatever else is wrong with it, a line that starts as BDAT is followed by message
   * octets: it must never fall through to an error reply that keeps reading commands. */
  if (cmd.verb == SMTP_VERB_BDAT || (len >= 4 && strncasecmp(line, "BDAT", 4) == 0 &&
                                     (len == 4 || line[4] == ' ' || line[4] == '\t'))) {
    cmd_bdat(s, &cmd, cmd.verb == SMTP_VERB_BDAT ? rc : SP_E_SYNTAX);
    return;
  }
  if (rc == SP_E_UNKNOWN_CMD) {
    session__reply(s, 500, "5.5.1", "Error: command not recognized");
    return;
  }
  /* A verb we do not offer is not implemented, whatever its arguments. */
  const struct session_cmd *c = cmd_find(cmd.verb);
  if (!c && cmd.verb != SMTP_VERB_UNKNOWN) {
    session__reply(s, 502, "5.5.1", "Error: command not implemented");
    return;
  }
  if (rc < 0 || !c) {
    session__reply(s, 501, "5.5.4", "Syntax error in parameters or arguments");
    return;
  }
  cmd_run(s, c, &cmd);
}
