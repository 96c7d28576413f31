/*
 * Private to kraken-journal: its commands that live in files of their
 * own.  Each returns the tool's exit status (0 good, 1 problems found,
 * 2 bad usage or something that cannot be read).
 */
#ifndef KRAKEN_JOURNAL_TOOL_H
#define KRAKEN_JOURNAL_TOOL_H

#include "journal.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* sync.tls.ca_file when no config is named (as in config.c). */
#define KJ_DEFAULT_CA "/etc/krakenfs/tls/ca.pem"

/*
 * verify --chain (kraken-journal-chain.c): checks every origin's signed
 * hash chain in J.  CA is --ca (NULL: none given), CONFIG_CA the
 * config's sync.tls.ca_file, used when CA is NULL and the file exists;
 * without either only the chains are checked.  JSON: one object.
 */
int kj_verify_chain(struct journal *j, const char *ca, const char *config_ca,
		    bool json);

/*
 * versions VOLUME PATH (kraken-journal-versions.c): every version of one
 * path, and whether its content is live, kept in the store under the
 * volume root ROOT (NULL: the one the journal names), on which peers
 * (asked through the running agent CFG names; NULL: not asked), or gone.
 */
struct config;
int kj_versions(struct journal *j, const struct config *cfg,
		const char *root, const char *volume, const char *path,
		bool json);
/*
 * GET TARGET from the running agent at CFG's api.listen
 * (kraken-journal-api.c): 0 with its JSON answer in *OUT, or a negative
 * code with WHY saying what went wrong.
 */
int kj_agent_get(const struct config *cfg, const char *target, json_t **out,
		 char *why, size_t cap);
/* METHOD TARGET, with the admin token when ADMIN (else the read one):
 * 0 with the HTTP status in *STATUS and the JSON answer in *OUT, or a
 * negative code with WHY saying what went wrong. */
int kj_agent_request(const struct config *cfg, const char *method,
		     const char *target, bool admin, json_t **out, int *status,
		     char *why, size_t cap);
/* S percent-encoded for a URL query into OUT: 0 or -ENAMETOOLONG. */
int kj_url_escape(const char *s, char *out, size_t cap);
/* restore VOLUME [PATH] --at TIME --to DEST (ARGV from the command on),
 * from the store and live files under ROOT (as above); content only
 * peers keep is fetched into the store first by the running agent CFG
 * names (NULL: left out, and said). */
int kj_restore_cmd(struct journal *j, const struct config *cfg,
		   const char *root, int argc, char **argv);
/* TIME as the CLI takes it (kraken-journal.c): 0 or -EINVAL. */
int kj_parse_time(const char *s, int64_t *out_ns);

#endif
