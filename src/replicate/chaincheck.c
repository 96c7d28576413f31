/*
 * Checking what peers say about origins, before the journal stores it.
 *
 * A CHAIN_ENTRIES frame carries, for every entry, the chain hash of the
 * origin's previous entry, and at each segment's end the origin's
 * signature (src/journal/chain.c).  For each run of one origin in a
 * frame this walks the new entries (past what the journal holds) from the
 * chain hash the journal expects and links each; then the run's last
 * signature, which covers every entry before it, is checked with the
 * origin node's key (keyring.h), and so are the ones that keep stored
 * segments within JOURNAL_SEGMENT_MAX (run_seal).  Only entries up to a
 * verified signature are stored; a wrong link or signature refuses the
 * run, is logged with the peer that sent it, and closes its session.  A segment longer than
 * JOURNAL_SEGMENT_MAX, or entries after the last segment end, are refused
 * too: a sender cuts frames at segment ends, and an origin signs at
 * least that often.
 *
 * Plain ENTRIES (a peer too old to chain) are taken in a TLS cluster only
 * for the sending node's own origin, which its certificate proves; in a
 * plaintext cluster, as before, from anyone.
 *
 * A state exchange is held to the same rule (chain_check_state): its
 * heads come in CHAIN_STATE runs, each linked from its first head's prev
 * through every head and the digests between them to a signature
 * (src/journal/exchange_proof.c), and SEALS prove the vector entries the
 * heads do not (chain_check_seal).  What fails refuses the whole
 * exchange and closes the session.
 *
 * Keys travel ahead of what they signed: a session sends KEY with the
 * certificate of each key before the first frame holding a signature by
 * it, and the peer's own certificate from its TLS handshake is known
 * once it is connected.
 */
#include "replicate_int.h"
#include "chaincheck.h"
#include "session.h"

#include "err.h"
#include "keyring.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A burst's commits share a signature this far apart at most: the
 * latency a burst's tail may wait, for a receiver's check per 5 ms of
 * it rather than per commit. */
#define CHAIN_SIGN_INTERVAL_NS (5 * 1000000LL)

struct run {
	struct session *s;
	const struct wire_entry *v;
	size_t n;
	uint8_t *take;
	bool gap;
	uint8_t expect[CONTENT_HASH_LEN];
	bool known;
};

static int run_refuse(struct run *u, size_t i, const char *why)
{
	u->s->peer->stats.entries_refused += u->n - i;
	log_warn("replicate", "refused entries of %s from seq %llu sent by "
		 "%s: %s", u->v[i].ref.origin,
		 (unsigned long long)u->v[i].ref.seq, u->s->peer->id, why);
	return KR_EHOSTILE;
}

/* The signature at entry I, over CHAIN; what it covers from FROM on is
 * refused when it does not verify. */
static int run_signature(struct run *u, size_t i, size_t from,
			 const uint8_t chain[CONTENT_HASH_LEN])
{
	const struct wire_entry *w = &u->v[i];
	struct keyring *k = u->s->r->keyring;
	int rc;

	if (!keyring_verifies(k))
		return 0;     /* plaintext: nothing to check it with */
	if (w->sig_len == 0)
		return run_refuse(u, from, "its segment is not signed");
	rc = keyring_check(k, w->ref.origin, w->ref.seq, chain, w->key_id,
			   w->sig, w->sig_len);
	if (rc == -ENOKEY)
		return run_refuse(u, from, "signed by a key whose certificate "
				  "was not sent");
	if (rc)
		return run_refuse(u, from, "the signature does not verify "
				  "with the key of the origin's node");
	return 0;
}

/* A segment end of the run: its entry and the chain hash there. */
struct seg_end {
	size_t i;
	uint8_t chain[CONTENT_HASH_LEN];
};

/* Links entry I onto what U expects; a segment end joins ENDS. */
static int run_link(struct run *u, size_t i, size_t seg, struct seg_end *ends,
		    size_t *n_ends)
{
	const struct wire_entry *w = &u->v[i];
	uint8_t digest[CONTENT_HASH_LEN];
	struct journal_change c;
	int err;

	if (i > 0 && w->ref.seq != u->v[i - 1].ref.seq + 1)
		return run_refuse(u, i, "its seqs are not consecutive");
	if (i - seg >= JOURNAL_SEGMENT_MAX)
		return run_refuse(u, i, "a segment longer than any origin "
				  "signs");
	if (u->known && memcmp(u->expect, w->prev, CONTENT_HASH_LEN))
		return run_refuse(u, i, "it does not follow the origin's "
				  "chain (forged, altered or reordered)");
	wire_entry_to_change(w, &c);
	err = journal_entry_digest(&c, digest);
	if (err)
		return err;
	journal_chain_link(w->prev, digest, u->expect);
	u->known = true;
	if (w->seg_end) {
		ends[*n_ends].i = i;
		memcpy(ends[(*n_ends)++].chain, u->expect, CONTENT_HASH_LEN);
	}
	return 0;
}

/*
 * Every link is checked; of the signatures, the last one of the run
 * covers the whole chain before it, so only that one and those needed to
 * keep stored segments within JOURNAL_SEGMENT_MAX are checked and kept.
 * The others are dropped (their entries are taken as mid-segment): one
 * signature check per run, not per commit of the origin, which made a
 * burst of small files cost the receiver a check per file or two.
 */
static int run_seal(struct run *u, const struct seg_end *ends, size_t n,
		    size_t from)
{
	size_t kept = from;       /* where the stored segment begins */
	int err = 0;

	for (size_t e = 0; e < n && !err; e++) {
		bool keep = e + 1 == n ||
			    ends[e + 1].i + 1 - kept > JOURNAL_SEGMENT_MAX;

		for (size_t k = kept; k <= ends[e].i; k++)
			u->take[k] = CHAIN_TAKE_UNSIGNED;
		if (!keep)
			continue;
		err = run_signature(u, ends[e].i, from, ends[e].chain);
		u->take[ends[e].i] = CHAIN_TAKE;
		kept = ends[e].i + 1;
	}
	if (err)
		memset(u->take + from, 0, (u->n - from) * sizeof(*u->take));
	return err;
}

/* Entries U->v[FROM..] are new: link them all, then seal. */
static int run_walk(struct run *u, size_t from)
{
	struct seg_end *ends = malloc((u->n - from) * sizeof(*ends));
	size_t n = 0, seg = from;
	int err = ends ? 0 : -ENOMEM;

	for (size_t i = from; i < u->n && !err; i++) {
		err = run_link(u, i, seg, ends, &n);
		if (!err && u->v[i].seg_end)
			seg = i + 1;
	}
	if (!err && seg < u->n)
		err = run_refuse(u, seg, "the frame ends inside a segment");
	if (!err)
		err = run_seal(u, ends, n, from);
	free(ends);
	return err;
}

static int run_check(struct run *u)
{
	struct journal *j = u->s->r->journal;
	const char *origin = u->v[0].ref.origin;
	uint64_t have = journal_have(j, origin);
	size_t from = 0;

	/* Held already: taken, for the journal to say so, which tells
	 * the sync that the peer holds them too (it then counts as a
	 * source of their content). */
	while (from < u->n && u->v[from].ref.seq <= have)
		u->take[from++] = CHAIN_TAKE;
	if (from == u->n)
		return 0;
	if (u->v[from].ref.seq != have + 1) {
		u->gap = true;            /* ask again from where we stand */
		return 0;
	}
	u->known = journal_chain_expect(j, origin, u->expect) == 0;
	return run_walk(u, from);
}

int chain_check_entries(struct session *s, const struct wire_entry_list *l,
			uint8_t *take, bool *gap)
{
	size_t i = 0;
	int err = 0;

	memset(take, 0, l->n * sizeof(*take));
	*gap = false;
	while (i < l->n && !err) {
		struct run u = { .s = s, .v = &l->v[i], .take = &take[i] };

		while (i + u.n < l->n && strcmp(l->v[i + u.n].ref.origin,
						u.v[0].ref.origin) == 0)
			u.n++;
		err = run_check(&u);
		*gap |= u.gap;
		i += u.n;
	}
	return err;
}

/* ---- state exchange ------------------------------------------------------- */

static int state_refuse(struct session *s, const struct wire_entry *w,
			const char *why)
{
	log_warn("replicate", "refused the state sent by %s: its head %s:%llu "
		 "%s", s->peer->id, w->ref.origin,
		 (unsigned long long)w->ref.seq, why);
	return KR_EHOSTILE;
}

/* Links proven entry W onto *LINK (its prev when FIRST). */
static int state_link(const struct wire_entry *w, uint8_t link[CONTENT_HASH_LEN])
{
	uint8_t digest[CONTENT_HASH_LEN];
	struct journal_change c;
	int err;

	wire_entry_to_change(w, &c);
	err = journal_entry_digest(&c, digest);
	if (err)
		return err;
	journal_chain_link(w->prev, digest, link);
	for (uint16_t i = 0; i < w->n_after; i++)
		journal_chain_link(link, w->after[i], link);
	return 0;
}

/* The run of proven heads from L->v[*AT]: linked to its signature,
 * which is checked; *AT moves past it. */
static int state_run(struct session *s, const struct wire_entry_list *l,
		     uint32_t *at, uint64_t *sealed)
{
	const struct wire_entry *first = &l->v[*at], *w = first;
	struct keyring *k = s->r->keyring;
	uint8_t link[CONTENT_HASH_LEN];
	uint64_t end;
	int err;

	for (;;) {
		err = state_link(w, link);
		if (err)
			return err;
		end = w->ref.seq + w->n_after;
		if (end - first->ref.seq >= JOURNAL_SEGMENT_MAX)
			return state_refuse(s, first, "has a proof longer than "
					    "any segment");
		if (w->seg_end)
			break;
		if (++*at == l->n || strcmp(l->v[*at].ref.origin,
					    first->ref.origin) != 0 ||
		    l->v[*at].ref.seq != end + 1 ||
		    memcmp(l->v[*at].prev, link, CONTENT_HASH_LEN) != 0)
			return state_refuse(s, w, "has a proof that does not "
					    "reach a signature");
		w = &l->v[*at];
	}
	(*at)++;
	*sealed = end;
	if (!keyring_verifies(k))
		return 0;
	if (w->sig_len == 0)
		return state_refuse(s, w, "is not signed");
	err = keyring_check(k, w->ref.origin, end, link, w->key_id, w->sig,
			    w->sig_len);
	if (err)
		return state_refuse(s, w, err == -ENOKEY ?
				    "is signed by a key whose certificate was "
				    "not sent" : "has a signature that does not "
				    "verify with the key of its origin's node");
	return 0;
}

int chain_check_state(struct session *s, const struct wire_entry_list *l,
		      chain_proven_fn fn, void *arg)
{
	uint32_t at = 0;
	int err = 0;

	while (at < l->n && !err) {
		const char *origin = l->v[at].ref.origin;
		uint64_t sealed = 0;

		err = state_run(s, l, &at, &sealed);
		if (!err)
			fn(arg, origin, sealed);
	}
	return err;
}

int chain_check_seal(struct session *s, const struct wire_seal *e)
{
	struct keyring *k = s->r->keyring;
	int err;

	if (!keyring_verifies(k))
		return 0;
	err = keyring_check(k, e->ref.origin, e->ref.seq, e->chain, e->key_id,
			    e->sig, e->sig_len);
	if (!err)
		return 0;
	log_warn("replicate", "refused the state sent by %s: its proof of "
		 "%s:%llu %s", s->peer->id, e->ref.origin,
		 (unsigned long long)e->ref.seq, err == -ENOKEY ?
		 "is signed by a key whose certificate was not sent" :
		 "does not verify with the key of the origin's node");
	return KR_EHOSTILE;
}

bool chain_plain_allowed(struct session *s, const struct wire_entry *w)
{
	if (!keyring_verifies(s->r->keyring) ||
	    journal_origin_of(w->ref.origin, s->peer->id))
		return true;
	s->peer->stats.entries_refused++;
	if (!s->plain_refused) {
		s->plain_refused = true;
		log_warn("replicate", "peer %s relays %s's entries without "
			 "their signatures (an older KrakenFS?); refusing "
			 "them: upgrade it", s->peer->id, w->ref.origin);
	}
	return false;
}

/* ---- keys ---------------------------------------------------------------- */

static void chain_learn(struct replicate *r, const uint8_t *der, size_t len,
			const char *from)
{
	char node[KEYRING_NODE_MAX];
	uint8_t id[CONTENT_HASH_LEN];
	bool added;
	int err = keyring_add(r->keyring, der, len, node, id, &added);

	if (err == -EOPNOTSUPP)
		return;
	if (err) {
		log_warn("replicate", "ignored a signing key from %s: %s", from,
			 err == -EACCES ? "the cluster ca did not issue it" :
			 kr_strerror(err));
		return;
	}
	if (added && journal_key_put(r->journal, id, node, der, len) == 0)
		log_info("replicate", "learned %s's journal signing key from "
			 "%s", node, from);
}

void chain_on_key(struct session *s, const struct wire_key *k)
{
	chain_learn(s->r, k->der, k->len, s->peer->id);
}

void chain_on_connected(struct session *s, SSL *ssl)
{
	X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	unsigned char *der = NULL;
	int n = x ? i2d_X509(x, &der) : 0;

	if (n > 0)
		chain_learn(s->r, der, (size_t)n, s->peer->id);
	OPENSSL_free(der);
}

static bool keys_sent_has(struct session *s, const uint8_t *id)
{
	for (unsigned i = 0; i < s->n_keys_sent; i++)
		if (memcmp(s->keys_sent[i], id, CONTENT_HASH_LEN) == 0)
			return true;
	return false;
}

int chain_send_key(struct session *s, const uint8_t id[CONTENT_HASH_LEN])
{
	struct wire_msg m = { .type = WIRE_KEY };
	size_t len;
	const uint8_t *der;
	int err;

	if (keys_sent_has(s, id))
		return 0;
	der = keyring_cert(s->r->keyring, id, &len);
	if (!der)
		return 0;     /* the receiver will say which key it lacks */
	m.key.der = der;
	m.key.len = (uint16_t)len;
	err = session_send(s, &m);
	if (!err && s->n_keys_sent < SESSION_KEYS_SENT)
		memcpy(s->keys_sent[s->n_keys_sent++], id, CONTENT_HASH_LEN);
	return err;
}

static int chain_load_one(void *arg, const uint8_t *id, const char *node,
			  const uint8_t *der, size_t len)
{
	char got[KEYRING_NODE_MAX];
	uint8_t gid[CONTENT_HASH_LEN];
	bool added;

	(void)id;
	(void)node;
	keyring_add(arg, der, len, got, gid, &added);
	return 0;
}

/* Signs the tail of our chain that waited for the sign interval, and
 * lets it go out. */
void chain_tick(struct replicate *r)
{
	int rc = journal_chain_sign_due(r->journal, false);

	if (rc == 0)
		return;
	if (rc > 0)
		rc = journal_flush(r->journal);
	if (rc < 0)
		log_warn("replicate", "signing our newest changes: %s",
			 kr_strerror(rc));
	else
		r->kicked = true;
}

int chain_setup(struct replicate *r)
{
	const uint8_t *own = keyring_own_id(r->keyring);
	size_t len;
	const uint8_t *der;
	int err = 0;

	journal_set_sign_interval(r->journal, CHAIN_SIGN_INTERVAL_NS);
	if (keyring_verifies(r->keyring))
		err = journal_keys(r->journal, chain_load_one, r->keyring);
	if (!err && own) {
		der = keyring_cert(r->keyring, own, &len);
		err = journal_key_put(r->journal, own, r->node_id, der, len);
		if (!err)
			err = journal_set_signer(r->journal, own, keyring_sign,
						 r->keyring);
		if (!err)
			err = journal_flush(r->journal);
	}
	return err;
}
