/*
 * Journal signing keys; keyring.h says what counts as a node's key.
 */
#include "keyring.h"

#include "err.h"
#include "journal.h"
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

struct keyring_key {
	uint8_t id[CONTENT_HASH_LEN];
	char node[KEYRING_NODE_MAX];
	EVP_PKEY *pub;
	/* Set up once for verifying SHA-256 digests: a context made per
	 * check cost as much as the check itself. */
	EVP_PKEY_CTX *verify;
	uint8_t *der;
	size_t len;
};

struct keyring {
	X509_STORE *store;        /* the CA; NULL in a plaintext cluster */
	struct keyring_key *v;
	size_t n, cap;
	EVP_PKEY *own;
	EVP_PKEY_CTX *sign;       /* over the own key, like verify above */
	uint8_t own_id[CONTENT_HASH_LEN];
	EVP_MD *sha256;
};

static int keyring_load_ca(struct keyring *k, const char *ca_file,
			   char **errmsg)
{
	STACK_OF(X509) *cas = NULL;
	int err = tls_read_certs(ca_file, "ca certificate", &cas, errmsg);

	if (err)
		return err;
	k->store = X509_STORE_new();
	for (int i = 0; k->store && i < sk_X509_num(cas); i++)
		if (!X509_STORE_add_cert(k->store, sk_X509_value(cas, i)))
			err = -ENOMEM;
	if (!k->store)
		err = -ENOMEM;
	/* A signature made while the certificate was valid stays valid. */
	if (!err)
		X509_STORE_set_flags(k->store, X509_V_FLAG_NO_CHECK_TIME);
	sk_X509_pop_free(cas, X509_free);
	if (err)
		kr_seterr(errmsg, "out of memory loading %s", ca_file);
	return err;
}

int keyring_new(const char *ca_file, struct keyring **out, char **errmsg)
{
	struct keyring *k = calloc(1, sizeof(*k));
	int err = k ? 0 : -ENOMEM;

	if (!err) {
		k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
		err = k->sha256 ? 0 : -ENOMEM;
	}
	if (!err && ca_file)
		err = keyring_load_ca(k, ca_file, errmsg);
	if (err) {
		keyring_free(k);
		k = NULL;
	}
	*out = k;
	return err;
}

void keyring_free(struct keyring *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++) {
		EVP_PKEY_CTX_free(k->v[i].verify);
		EVP_PKEY_free(k->v[i].pub);
		free(k->v[i].der);
	}
	free(k->v);
	EVP_PKEY_CTX_free(k->sign);
	EVP_PKEY_free(k->own);
	EVP_MD_free(k->sha256);
	X509_STORE_free(k->store);
	free(k);
}

bool keyring_verifies(const struct keyring *k)
{
	return k && k->store;
}

const uint8_t *keyring_own_id(const struct keyring *k)
{
	return k && k->own ? k->own_id : NULL;
}

static int key_id_of(EVP_PKEY *pub, uint8_t id[CONTENT_HASH_LEN])
{
	unsigned char *spki = NULL;
	int n = i2d_PUBKEY(pub, &spki);
	int ok = n > 0 && EVP_Digest(spki, (size_t)n, id, NULL, EVP_sha256(),
				     NULL);

	OPENSSL_free(spki);
	return ok ? 0 : -EPROTO;
}

static struct keyring_key *keyring_find(const struct keyring *k,
					const uint8_t id[CONTENT_HASH_LEN])
{
	for (size_t i = 0; i < k->n; i++)
		if (memcmp(k->v[i].id, id, CONTENT_HASH_LEN) == 0)
			return &k->v[i];
	return NULL;
}

static bool keyring_issued(struct keyring *k, X509 *x)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok = ctx && X509_STORE_CTX_init(ctx, k->store, x, NULL) &&
		  X509_verify_cert(ctx) == 1;

	X509_STORE_CTX_free(ctx);
	return ok;
}

/* A context to sign (SIGN) or verify SHA-256 digests with KEY. */
static EVP_PKEY_CTX *keyring_ctx(struct keyring *k, EVP_PKEY *key, bool sign)
{
	EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new(key, NULL) : NULL;

	if (ctx && (sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx))
	    > 0 && EVP_PKEY_CTX_set_signature_md(ctx, k->sha256) > 0)
		return ctx;
	EVP_PKEY_CTX_free(ctx);
	return NULL;
}

static int keyring_keep(struct keyring *k, X509 *x, const uint8_t *der,
			size_t len, struct keyring_key *key)
{
	struct keyring_key *v;

	if (k->n == KEYRING_MAX)
		return -ENOSPC;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;

		v = realloc(k->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		k->v = v;
		k->cap = cap;
	}
	key->der = malloc(len);
	key->pub = X509_get_pubkey(x);
	key->verify = keyring_ctx(k, key->pub, false);
	if (!key->der || !key->pub || !key->verify) {
		free(key->der);
		EVP_PKEY_free(key->pub);
		EVP_PKEY_CTX_free(key->verify);
		return -ENOMEM;
	}
	memcpy(key->der, der, len);
	key->len = len;
	k->v[k->n++] = *key;
	return 0;
}

int keyring_add(struct keyring *k, const uint8_t *der, size_t len,
		char node[KEYRING_NODE_MAX], uint8_t id[CONTENT_HASH_LEN],
		bool *added)
{
	const unsigned char *p = der;
	struct keyring_key key = { 0 };
	X509 *x = NULL;
	EVP_PKEY *pub;
	int err = 0;

	*added = false;
	if (!k->store)
		return -EOPNOTSUPP;
	x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
	if (!x || p != der + len)
		err = -EPROTO;
	if (!err && tls_cert_node_id(x, key.node, sizeof(key.node)) != 0)
		err = -EPROTO;
	pub = err ? NULL : X509_get0_pubkey(x);
	if (!err && (!pub || key_id_of(pub, key.id) != 0))
		err = -EPROTO;
	if (!err && !keyring_issued(k, x))
		err = -EACCES;
	if (!err && !keyring_find(k, key.id)) {
		err = keyring_keep(k, x, der, len, &key);
		*added = err == 0;
	}
	if (!err) {
		memcpy(node, key.node, KEYRING_NODE_MAX);
		memcpy(id, key.id, CONTENT_HASH_LEN);
	}
	X509_free(x);
	ERR_clear_error();
	return err;
}

const uint8_t *keyring_cert(const struct keyring *k,
			    const uint8_t id[CONTENT_HASH_LEN], size_t *len)
{
	const struct keyring_key *key = k ? keyring_find(k, id) : NULL;

	*len = key ? key->len : 0;
	return key ? key->der : NULL;
}

static int keyring_own_cert(struct keyring *k, const char *cert_file,
			    char **errmsg)
{
	STACK_OF(X509) *certs = NULL;
	unsigned char *der = NULL;
	char node[KEYRING_NODE_MAX];
	bool added;
	int n, err = tls_read_certs(cert_file, "certificate", &certs, errmsg);

	if (err)
		return err;
	n = i2d_X509(sk_X509_value(certs, 0), &der);
	err = n > 0 ? keyring_add(k, der, (size_t)n, node, k->own_id,
				  &added) : -ENOMEM;
	if (err)
		kr_seterr(errmsg, "cannot use %s to sign the journal: %s",
			  cert_file, err == -EACCES ? "the cluster ca did not "
			  "issue it" : kr_strerror(err));
	OPENSSL_free(der);
	sk_X509_pop_free(certs, X509_free);
	return err;
}

int keyring_set_own(struct keyring *k, const char *cert_file,
		    const char *key_file, char **errmsg)
{
	uint8_t id[CONTENT_HASH_LEN];
	EVP_PKEY *key = NULL;
	int err = keyring_own_cert(k, cert_file, errmsg);

	if (!err)
		err = tls_read_key(key_file, &key, errmsg);
	if (!err && (key_id_of(key, id) != 0 ||
		     memcmp(id, k->own_id, CONTENT_HASH_LEN) != 0)) {
		kr_seterr(errmsg, "%s is not the key of %s", key_file,
			  cert_file);
		err = -EINVAL;
	}
	if (err) {
		EVP_PKEY_free(key);
		return err;
	}
	EVP_PKEY_CTX_free(k->sign);
	EVP_PKEY_free(k->own);
	k->own = key;
	k->sign = keyring_ctx(k, key, true);
	if (!k->sign) {
		kr_seterr(errmsg, "cannot sign with %s", key_file);
		return -EINVAL;
	}
	return 0;
}

int keyring_sign(void *arg, const uint8_t *msg, size_t len, uint8_t *sig,
		 size_t *sig_len)
{
	struct keyring *k = arg;
	uint8_t md[CONTENT_HASH_LEN];
	size_t max = 0;
	int ok = k->sign &&
		 EVP_Digest(msg, len, md, NULL, k->sha256, NULL) &&
		 EVP_PKEY_sign(k->sign, NULL, &max, md, sizeof(md)) > 0 &&
		 max <= JOURNAL_SIG_MAX;

	*sig_len = max;
	ok = ok && EVP_PKEY_sign(k->sign, sig, sig_len, md, sizeof(md)) > 0;
	ERR_clear_error();
	return ok ? 0 : -EIO;
}

int keyring_check(void *arg, const char *origin, uint64_t seq,
		  const uint8_t chain[CONTENT_HASH_LEN], const uint8_t *key_id,
		  const uint8_t *sig, size_t sig_len)
{
	struct keyring *k = arg;
	const struct keyring_key *key = keyring_find(k, key_id);
	uint8_t msg[JOURNAL_SIG_MSG_MAX], md[CONTENT_HASH_LEN];
	size_t len;
	int ok;

	if (!key)
		return -ENOKEY;
	if (!journal_origin_of(origin, key->node))
		return KR_EHOSTILE;
	len = journal_sig_message(origin, seq, chain, msg);
	ok = EVP_Digest(msg, len, md, NULL, k->sha256, NULL) &&
	     EVP_PKEY_verify(key->verify, sig, sig_len, md, sizeof(md)) == 1;
	ERR_clear_error();
	return ok ? 0 : KR_EHOSTILE;
}
