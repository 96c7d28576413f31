/* The signed journal on the wire (chaincheck.c): entries, proofs and
 * keys checked before they are taken. */
#ifndef KRAKEN_CHAINCHECK_H
#define KRAKEN_CHAINCHECK_H

#include "replicate_int.h"

/* Loads the journal's keys into the ring and signs from now on. */
int chain_setup(struct replicate *r);
/* What to do with each entry of a CHAIN_ENTRIES frame. */
enum chain_take {
	CHAIN_SKIP,               /* not checked, or refused */
	CHAIN_TAKE,               /* checked; a segment end keeps its signature */
	CHAIN_TAKE_UNSIGNED,      /* checked through a later signature */
};
/* What to do with each entry of L (TAKE, one per entry), and whether
 * some came past a hole (GAP).  KR_EHOSTILE when the peer sent a forged
 * or broken chain: logged, the runs of other origins are still taken. */
int chain_check_entries(struct session *s, const struct wire_entry_list *l,
			uint8_t *take, bool *gap);
/* Whether plain (unchained) entry W may be taken from S's peer. */
bool chain_plain_allowed(struct session *s, const struct wire_entry *w);
/* Checks the runs of proven heads of a CHAIN_STATE frame; FN learns the
 * seq each run's signature covers.  KR_EHOSTILE (logged) when a proof
 * fails: the exchange is refused. */
typedef void (*chain_proven_fn)(void *arg, const char *origin, uint64_t seq);
int chain_check_state(struct session *s, const struct wire_entry_list *l,
		      chain_proven_fn fn, void *arg);
/* Checks one seal of SEALS: 0, or KR_EHOSTILE (logged). */
int chain_check_seal(struct session *s, const struct wire_seal *e);
void chain_on_key(struct session *s, const struct wire_key *k);
/* S is open: its peer's certificate (from SSL, NULL without TLS) is
 * the key of its own entries. */
void chain_on_connected(struct session *s, SSL *ssl);
/* Signs what waited for the sign interval once it is due. */
void chain_tick(struct replicate *r);
/* Sends the certificate of key ID unless S sent it already. */
int chain_send_key(struct session *s, const uint8_t id[CONTENT_HASH_LEN]);

#endif
