/*
 * The keys that sign journal chains (src/journal/chain.c).
 *
 * A node signs its own changes with the key of its TLS identity
 * (node-key.pem), so adding a node stays one command: `krakenfs-agent tls
 * issue` makes the key that both opens its connections and signs its
 * journal.  A receiver verifies with the certificate of the origin's node:
 * learned from the node's own TLS handshake, from a KEY message that a
 * relay sends before the first entries a key signed, or from the journal's
 * keys table.  A certificate counts only if the cluster CA issued it and
 * it names the origin's node; its validity dates are not checked, since a
 * signature made while it was valid stays the node's word.
 *
 * Key id: SHA-256 of the certificate's public key (DER SubjectPublicKeyInfo),
 * so a certificate re-issued for the same key keeps its id.
 *
 * Without a CA (a plaintext cluster) nothing verifies and nothing is
 * signed: chains are still checked, forgery is not prevented, and the
 * agent says so at start-up and in /v1/status.
 *
 * Memory: at most KEYRING_MAX certificates, each under WIRE_CERT_MAX
 * bytes; only the CA's holder can make more.
 */
#ifndef KRAKEN_KEYRING_H
#define KRAKEN_KEYRING_H

#include "content.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYRING_MAX 1024
#define KEYRING_NODE_MAX 65

struct keyring;

/* CA_FILE NULL: a keyring that verifies nothing (plaintext). */
int keyring_new(const char *ca_file, struct keyring **out, char **errmsg);
void keyring_free(struct keyring *k);
/* Whether signatures can be checked (a CA is loaded). */
bool keyring_verifies(const struct keyring *k);

/* This node's certificate and key: they sign its chains.  The
 * certificate joins the ring. */
int keyring_set_own(struct keyring *k, const char *cert_file,
		    const char *key_file, char **errmsg);
/* The own key's id, NULL before keyring_set_own. */
const uint8_t *keyring_own_id(const struct keyring *k);

/*
 * Adds a certificate (DER): 0 with its node id in NODE and its key id in
 * ID (*ADDED says whether it was new); -EPROTO when it does not parse or
 * names no valid node; -EACCES when the CA did not issue it; -ENOSPC
 * past KEYRING_MAX; -EOPNOTSUPP without a CA.
 */
int keyring_add(struct keyring *k, const uint8_t *der, size_t len,
		char node[KEYRING_NODE_MAX], uint8_t id[CONTENT_HASH_LEN],
		bool *added);
/* The certificate with key id ID (borrowed), NULL when unknown. */
const uint8_t *keyring_cert(const struct keyring *k,
			    const uint8_t id[CONTENT_HASH_LEN], size_t *len);

/* journal_sign_fn over the own key (K: the keyring). */
int keyring_sign(void *k, const uint8_t *msg, size_t len, uint8_t *sig,
		 size_t *sig_len);
/* journal_sig_check_fn (K: the keyring): 0, -ENOKEY, KR_EHOSTILE. */
int keyring_check(void *k, const char *origin, uint64_t seq,
		  const uint8_t chain[CONTENT_HASH_LEN], const uint8_t *key_id,
		  const uint8_t *sig, size_t sig_len);

#endif
