/* Pure SMTP text handling: line framing, command parsing, reply parsing and
 * formatting, EHLO capabilities, and the DATA scanner. No I/O, no allocation: every
 * output goes into caller-provided, bounded storage. Parsers of outside input: each has
 * a fuzz target (tests/fuzz/) and unit tests of malformed input. */
#ifndef SP_SMTP_H
#define SP_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1: command line 512 octets with CRLF; we allow extensions' params. */
#define SMTP_COMMAND_LINE_MAX 2048
#define SMTP_REPLY_LINE_MAX 1024 /* one reply line, without CRLF */
#define SMTP_REPLY_MAX_LINES 32  /* more lines: kept first 31 and the last */
#define SMTP_PATH_MAX 256        /* RFC 5321 §4.5.3.1.3 */
#define SMTP_MAX_PARAMS 16

/* ---- Line framing ---------------------------------------------------------------
 * Finds the first line in buf[0..len). Returns 1 when a line is complete: *line_len is
 * its length without the line end, *consumed includes the line end. A line ends with
 * CRLF or, leniently for commands and replies, a bare LF (the CR is not part of the
 * line). Returns 0 when more input is needed (no LF yet and len <= max, or
 * len == max+1 ending in CR), and SP_E_TOOLONG when the line can no longer fit: no LF
 * within the first max+2 bytes (max counts the line without its CRLF). */
int smtp_find_line(const char *buf, size_t len, size_t max, size_t *line_len,
                   size_t *consumed);

/* ---- Commands ---------------------------------------------------------------------
 */
enum smtp_verb {
  SMTP_VERB_UNKNOWN = 0,
  SMTP_VERB_HELO,
  SMTP_VERB_EHLO,
  SMTP_VERB_LHLO,
  SMTP_VERB_MAIL,
  SMTP_VERB_RCPT,
  SMTP_VERB_DATA,
  SMTP_VERB_BDAT,
  SMTP_VERB_RSET,
  SMTP_VERB_NOOP,
  SMTP_VERB_QUIT,
  SMTP_VERB_VRFY,
  SMTP_VERB_EXPN,
  SMTP_VERB_HELP,
  SMTP_VERB_STARTTLS,
  SMTP_VERB_AUTH,
};

struct smtp_param {
  char key[32];    /* upper-cased, e.g. "SIZE"; esmtp-keyword syntax */
  char value[256]; /* as sent (xtext not decoded); "" when the param has no '=' */
  bool has_value;
};

struct smtp_command {
  enum smtp_verb verb;
  /* Everything after the verb and one space, trimmed of trailing spaces; points into
   * the parsed line (valid as long as it). For HELO/EHLO/LHLO: the domain or address
   * literal. For VRFY/HELP/NOOP: the argument. */
  const char *arg;
  size_t arg_len;
  /* MAIL/RCPT only: the reverse- or forward-path without angle brackets and without a
   * source route ("@a,@b:"); "" is the null reverse-path. Quoted local parts are kept
   * as written. */
  char path[SMTP_PATH_MAX + 1];
  struct smtp_param params[SMTP_MAX_PARAMS];
  size_t nparams;
};

/* Parses one command line (without line end). Verbs are case-insensitive.
 * Returns 0, SP_E_UNKNOWN_CMD (verb not in the table: reply 500 5.5.1), or SP_E_SYNTAX
 * (known verb, bad arguments: reply 501 5.5.4). Rules:
 *  - "MAIL FROM:" and "RCPT TO:" are case-insensitive; a space after the colon is
 *    tolerated; the path must be in <>; addresses are dot-string/quoted-string '@'
 *    domain/address-literal; the path may be <> only for MAIL; RCPT <postmaster>
 *    (no domain) is accepted with path "postmaster".
 *  - NUL bytes or other control characters (other than HTAB) in a line → SP_E_SYNTAX.
 *  - DATA, RSET, QUIT, STARTTLS take no argument (SP_E_SYNTAX otherwise).
 *  - HELO/EHLO/LHLO need an argument.
 *  - params: space-separated esmtp-keyword[=esmtp-value]; more than SMTP_MAX_PARAMS,
 *    a key over 31 chars or a value over 255 → SP_E_SYNTAX. */
int smtp_parse_command(const char *line, size_t len, struct smtp_command *out);

/* Finds a param by key (case-insensitive); NULL when absent. */
const struct smtp_param *smtp_command_param(const struct smtp_command *cmd,
                                            const char *key);

/* Whether a parameter's value has the syntax its RFC gives, for the parameters the
 * proxy passes on (values case-insensitive):
 *  - SIZE: 1*20DIGIT (RFC 1870);  BODY: 7BIT or 8BITMIME (RFC 6152);
 *  - SMTPUTF8: no value (RFC 6531);
 *  - RET: FULL or HDRS;  ENVID: xtext of at most 100 characters;
 *    NOTIFY: NEVER, or a comma-separated list of SUCCESS, FAILURE, DELAY;
 *    ORCPT: addr-type ";" xtext, or any value for addr-type utf-8 (RFC 3461, 6533).
 * Any other key: true (not ours to judge). */
bool smtp_param_valid(const struct smtp_param *p);

/* The domain part of an address: "user@Example.COM" → "Example.COM" (not copied).
 * Returns 0, or SP_E_SYNTAX when there is no '@' or the domain is empty. */
int smtp_path_domain(const char *path, const char **domain, size_t *domain_len);

/* ---- Replies ----------------------------------------------------------------------
 */
struct smtp_reply {
  int code;          /* 200..599 */
  char enhanced[16]; /* "2.1.0" from the first line when present (class must match the
                        code's first digit, RFC 2034); "" otherwise */
  size_t nlines;
  /* Each line's text after "NNN-" / "NNN " (enhanced code, if any, left in place),
   * NUL-terminated, cut at SMTP_REPLY_LINE_MAX. */
  char lines[SMTP_REPLY_MAX_LINES][SMTP_REPLY_LINE_MAX + 1];
};

/* Incremental: the reply is assembled in place in the caller's struct smtp_reply, so
 * the parser itself is a few bytes and an idle connection holds no partial reply. */
struct smtp_reply_parser {
  int code; /* of the reply being assembled */
  bool in_progress;
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
/* Feeds one reply line (without line end) into *out, which must be the same struct
 * for every line of one reply and is only meaningful once the call returns 1 (then it
 * holds the complete reply; the parser is ready for the next). Returns 1 when the
 * reply is complete, 0 when more lines are needed, SP_E_PROTOCOL when the line is not
 * "NNN", "NNN text", "NNN-text" with 2xx..5xx (a bare code "250" is allowed), holds a
 * control character other than HTAB (NUL, bare CR...), or a continuation line's code
 * differs from the first (parser reset). */
int smtp_reply_feed_line(struct smtp_reply_parser *p, const char *line, size_t len,
                         struct smtp_reply *out);
/* A reply has begun and its last line has not come yet. */
bool smtp_reply_parser_busy(const struct smtp_reply_parser *p);

/* Writes the reply as wire text "NNN-line\r\n...NNN line\r\n" into out (cap bytes),
 * NUL-terminated. code overrides r->code when non-zero (the lines are kept). Returns
 * the length, SP_E_OVERFLOW when it does not fit, or SP_E_INVAL for a code outside
 * 200..599 or a line holding a control character. */
int smtp_reply_format(const struct smtp_reply *r, int code, char *out, size_t cap);
/* The same with enh ("X.Y.Z", its class the code's; NULL or "": none) written before
 * each line's text: a reply that came without enhanced codes, passed on by a server
 * that advertises ENHANCEDSTATUSCODES. SP_E_INVAL also for a malformed enh. */
int smtp_reply_format_enhanced(const struct smtp_reply *r, int code, const char *enh,
                               char *out, size_t cap);

/* Builds a one-or-more-line reply from code, enhanced code ("" for none) and text
 * (lines separated by '\n'; a final '\n' adds no empty line) as wire text, each line
 * "NNN[-| ]X.Y.Z text". Returns the length, SP_E_OVERFLOW, or SP_E_INVAL for a code
 * outside 200..599, a malformed enhanced code or one whose class differs from the
 * code's, or a control character (other than '\n' and HTAB) in text. */
int smtp_reply_build(char *out, size_t cap, int code, const char *enhanced,
                     const char *text);

/* ---- EHLO capabilities ------------------------------------------------------------
 */
enum smtp_cap {
  SMTP_CAP_STARTTLS = 1u << 0,
  SMTP_CAP_PIPELINING = 1u << 1,
  SMTP_CAP_SIZE = 1u << 2,
  SMTP_CAP_8BITMIME = 1u << 3,
  SMTP_CAP_SMTPUTF8 = 1u << 4,
  SMTP_CAP_DSN = 1u << 5,
  SMTP_CAP_ENHANCEDSTATUSCODES = 1u << 6,
  SMTP_CAP_CHUNKING = 1u << 7,
};
struct smtp_caps {
  unsigned flags;    /* enum smtp_cap bits */
  uint64_t size_max; /* SIZE's argument; 0 when absent or none */
};
/* Reads keywords from lines 2..n of an EHLO reply (line 1 is the greeting domain).
 * Keywords are case-insensitive; unknown ones are ignored. */
void smtp_ehlo_caps(const struct smtp_reply *ehlo, struct smtp_caps *caps);

/* ---- DATA scanner -----------------------------------------------------------------
 * Watches the message data the client sends after 354, chunk by chunk, for the end
 * "CRLF.CRLF" (the data's first line counts as following a CRLF) and for bare CR or LF
 * (a CR not followed by LF, an LF not preceded by CR: SMTP smuggling, CVE-2023-51764).
 * Only CRLF.CRLF ends the data.
 *
 * The scanner keeps the client's dot-stuffing: forwarded bytes are the client's bytes,
 * so a line "..x" stays "..x" for the next hop. The terminating ".\r\n" is NOT part of
 * the forwarded output: the caller sends it itself (or not, on a fault).
 *
 * Modes:
 *  - SMTP_DATA_REFUSE: bytes are forwarded unchanged; on the first bare CR/LF the
 *    scanner sets `bare` and from then on forwards nothing (output 0 bytes) but still
 *    finds the real end, so the caller can refuse the message once it is over.
 *  - SMTP_DATA_NORMALIZE: each bare CR or LF becomes CRLF, and the output is what a
 *    strict client would have sent for the lines so made, so that the MX, un-stuffing
 *    each line, stores the text received. Every line keeps the client's bytes and
 *    dot-stuffing, except that a leading '.' the client cannot have meant as stuffing
 *    gets a second '.':
 *      - a lone "." that is not the end (ended by a bare CR/LF, or following one):
 *        "A\r\n.\nB" -> "A\r\n..\r\nB" (the MX stores "A", ".", "B");
 *      - after a bare CR/LF, a '.' not followed by a second '.': "A\n.x" ->
 *        "A\r\n..x" (the MX stores ".x"); a leading ".." there is the client's
 *        stuffing and is kept: "A\n..\nB" -> "A\r\n..\r\nB", as for "A\r\n..\r\nB";
 *      - after a real CRLF, ".x" is kept as sent (the MX drops the dot, as any
 *        receiver of the client's bytes would, RFC 5321 §4.5.2).
 *    The output is the same however the input is split across calls. `bare` is set
 *    and `bare_ends` counts the line ends rewritten (for the log).
 */
enum smtp_data_mode { SMTP_DATA_REFUSE, SMTP_DATA_NORMALIZE };

struct smtp_data_scanner {
  enum smtp_data_mode mode;
  int state;          /* private */
  bool done;          /* the end has been consumed */
  bool bare;          /* a bare CR or LF was seen */
  uint64_t bare_ends; /* bare CRs and LFs seen (each made CRLF when normalizing) */
  uint64_t bytes;     /* data bytes consumed so far, terminator excluded */
};

void smtp_data_init(struct smtp_data_scanner *s, enum smtp_data_mode mode);

/* Consumes in[0..len) until the end of data (which it includes) or the end of input.
 * Bytes to forward go to out (capacity out_cap; out_cap >= 2 * len + 4 is always
 * enough), *out_len their count. Returns the number of input bytes consumed: less than
 * len only when the end was found (s->done) — the rest belongs to the next command —
 * or when out_cap was below that bound (it stops rather than overflow; with out_cap >= 5
 * it still consumes at least one byte, as one byte releases at most 5). Up to two
 * bytes (a CR, a '.' at a line start, or ".\r") are held back until the next byte
 * tells what they are, so a chunk's output may lag its input. */
size_t smtp_data_scan(struct smtp_data_scanner *s, const char *in, size_t len,
                      char *out, size_t out_cap, size_t *out_len);

#endif
