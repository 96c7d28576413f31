/*
 * Credentials (the cluster CA, node certificates) and TLS contexts.
 *
 * Files are written in three steps so a crash or a second writer never
 * leaves half a key under the real name: a temp file beside the target
 * (mkstemp, so it starts 0600 whatever the umask), fsync, then a rename
 * that refuses to replace an existing file unless forced.  Key material
 * therefore never exists, even briefly, with looser permissions.
 *
 * Certificates carry the node id twice, as CN (what people read) and as
 * a subjectAltName DNS entry (what tls_peer_node_id() trusts first, as
 * RFC 6125 says names belong there).  notBefore is set an hour back so a
 * node whose clock runs slow accepts a freshly issued certificate.
 */
#include "tls.h"

#include "err.h"
#include "nodeid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLS_CA_DAYS (10 * 365 + 3)
#define TLS_NODE_DAYS (5 * 365 + 2)
#define TLS_SKEW_SECONDS 3600


/* strerror() in lower case, as every message here is. */
static const char *tls_strerror(int err, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* The OpenSSL reason for the failure just seen, for a message. */
static const char *tls_ssl_reason(void)
{
	unsigned long e = ERR_peek_error();
	const char *text = e ? ERR_reason_error_string(e) : NULL;

	return text ? text : "unknown openssl error";
}

static char *tls_join(const char *dir, const char *name)
{
	char *path;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	return path;
}

/* ---- writing files ---- */

typedef int (*tls_emit_fn)(BIO *bio, void *obj);

static int tls_emit_key(BIO *bio, void *obj)
{
	return PEM_write_bio_PrivateKey(bio, obj, NULL, NULL, 0, NULL, NULL);
}

static int tls_emit_cert(BIO *bio, void *obj)
{
	return PEM_write_bio_X509(bio, obj);
}

/* Some filesystems lack RENAME_NOREPLACE; link() gives the same promise. */
static int tls_publish(const char *tmp, const char *path, bool force)
{
	if (force)
		return rename(tmp, path) ? -errno : 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(tmp, path))
		return -errno;
	unlink(tmp);
	return 0;
}

static int tls_emit_fd(int fd, tls_emit_fn emit, void *obj)
{
	BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
	int rc = -EIO;

	if (!bio)
		return -ENOMEM;
	errno = 0;
	if (emit(bio, obj) && BIO_flush(bio) == 1)
		rc = 0;
	else if (errno)
		rc = -errno;
	BIO_free(bio);
	return rc;
}

/* Writes OBJ as PEM to PATH with MODE, atomically (see the top). */
static int tls_write_pem(const char *path, mode_t mode, bool force,
			 tls_emit_fn emit, void *obj, char **errmsg)
{
	char *tmp = NULL;
	char why[128];
	int fd;
	int rc = -ENOMEM;

	if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
		tmp = NULL;
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		kr_seterr(errmsg, "cannot create %s: %s", path,
			   tls_strerror(-rc, why, sizeof(why)));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	rc = fchmod(fd, mode) ? -errno : tls_emit_fd(fd, emit, obj);
	if (rc == 0 && fsync(fd))
		rc = -errno;
	if (close(fd) && rc == 0)
		rc = -errno;
	if (rc) {
		kr_seterr(errmsg, "cannot write %s: %s", path,
			   tls_strerror(-rc, why, sizeof(why)));
		goto out;
	}
	rc = tls_publish(tmp, path, force);
	if (rc == 0) {
		free(tmp);      /* the name is the target's now */
		tmp = NULL;
	} else if (rc == -EEXIST) {
		kr_seterr(errmsg, "%s already exists; use --force to "
			   "replace it", path);
	} else {
		kr_seterr(errmsg, "cannot create %s: %s", path,
			   tls_strerror(-rc, why, sizeof(why)));
	}
out:
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	if (rc == -ENOMEM && errmsg && !*errmsg)
		kr_seterr(errmsg, "out of memory writing %s", path);
	return rc;
}

/* So that a rename survives a power cut, the directory is synced too. */
static void tls_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/*
 * Checks that no target exists before writing either, so that a refused
 * run leaves nothing half made.  The rename still guards against races.
 */
static int tls_check_absent(const char *path, bool force, char **errmsg)
{
	struct stat st;
	char why[128];
	int err;

	if (force)
		return 0;
	if (lstat(path, &st) == 0) {
		kr_seterr(errmsg, "%s already exists; use --force to "
			   "replace it", path);
		return -EEXIST;
	}
	err = errno;
	if (err == ENOENT)
		return 0;
	kr_seterr(errmsg, "cannot check %s: %s", path,
		   tls_strerror(err, why, sizeof(why)));
	return -err;
}

/* Writes a key (0600) and then its certificate (0644) into DIR. */
static int tls_write_pair(const char *dir, const char *key_name,
			  EVP_PKEY *key, const char *cert_name, X509 *cert,
			  bool force, char **errmsg)
{
	char *key_path = tls_join(dir, key_name);
	char *cert_path = tls_join(dir, cert_name);
	int rc = -ENOMEM;

	if (!key_path || !cert_path) {
		kr_seterr(errmsg, "out of memory");
		goto out;
	}
	rc = tls_check_absent(key_path, force, errmsg);
	if (rc == 0)
		rc = tls_check_absent(cert_path, force, errmsg);
	if (rc == 0)
		rc = tls_write_pem(key_path, 0600, force, tls_emit_key, key,
				   errmsg);
	if (rc == 0)
		rc = tls_write_pem(cert_path, 0644, force, tls_emit_cert, cert,
				   errmsg);
	if (rc == 0)
		tls_sync_dir(dir);
out:
	free(key_path);
	free(cert_path);
	return rc;
}

/* ---- making certificates ---- */

static EVP_PKEY *tls_keygen(char **errmsg)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (!key)
		kr_seterr(errmsg, "cannot generate an ec p-256 key: %s",
			   tls_ssl_reason());
	return key;
}

/* A random positive 127-bit serial: unique without keeping a counter. */
static int tls_set_serial(X509 *x)
{
	unsigned char raw[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	raw[0] &= 0x7f;
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		return -ENOMEM;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

static int tls_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/*
 * A certificate for KEY named CN, valid DAYS, issued by ISSUER (NULL:
 * self-signed) without extensions or signature yet.  NULL on failure.
 */
static X509 *tls_cert_start(EVP_PKEY *key, const char *cn, X509 *issuer,
			    long days)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	const unsigned char *text = (const unsigned char *)cn;
	bool ok = x && name;

	ok = ok && X509_set_version(x, X509_VERSION_3);
	ok = ok && tls_set_serial(x) == 0;
	ok = ok && X509_NAME_add_entry_by_NID(name, NID_commonName,
					      MBSTRING_UTF8, text, -1, -1, 0);
	ok = ok && X509_set_subject_name(x, name);
	ok = ok && X509_set_issuer_name(x, issuer ?
					X509_get_subject_name(issuer) : name);
	ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -TLS_SKEW_SECONDS);
	ok = ok && X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL);
	ok = ok && X509_set_pubkey(x, key);
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

/* One extension, its value in OpenSSL's configuration syntax. */
struct tls_ext {
	int nid;
	const char *value;
};

static int tls_finish_cert(X509 *x, X509 *issuer, EVP_PKEY *issuer_key,
			   const struct tls_ext *exts, size_t n)
{
	X509V3_CTX ctx;
	size_t i;
	int rc;

	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	for (i = 0; i < n; i++) {
		rc = tls_add_ext(x, &ctx, exts[i].nid, exts[i].value);
		if (rc)
			return rc;
	}
	return X509_sign(x, issuer_key, EVP_sha256()) > 0 ? 0 : -EINVAL;
}

static X509 *tls_make_ca(EVP_PKEY *key, char **errmsg)
{
	static const struct tls_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	unsigned char tag[4];
	char cn[64];
	X509 *x = NULL;

	/* Tells one cluster's CA from another's when people compare them. */
	if (RAND_bytes(tag, sizeof(tag)) == 1) {
		snprintf(cn, sizeof(cn), "krakenfs cluster ca %02x%02x%02x%02x",
			 tag[0], tag[1], tag[2], tag[3]);
		x = tls_cert_start(key, cn, NULL, TLS_CA_DAYS);
	}
	if (x && tls_finish_cert(x, NULL, key, exts,
				 sizeof(exts) / sizeof(exts[0])) != 0) {
		X509_free(x);
		x = NULL;
	}
	if (!x)
		kr_seterr(errmsg, "cannot create the ca certificate: %s",
			   tls_ssl_reason());
	return x;
}

static X509 *tls_make_node(EVP_PKEY *key, const char *node_id, X509 *ca,
			   EVP_PKEY *ca_key, char **errmsg)
{
	char san[TLS_NODE_ID_MAX + 8];
	const struct tls_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "serverAuth,clientAuth" },
		{ NID_subject_alt_name, san },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	X509 *x;

	/* The id was checked against [a-zA-Z0-9._-], so it cannot inject
	 * further entries into the value string. */
	snprintf(san, sizeof(san), "DNS:%s", node_id);
	x = tls_cert_start(key, node_id, ca, TLS_NODE_DAYS);
	if (x && tls_finish_cert(x, ca, ca_key, exts,
				 sizeof(exts) / sizeof(exts[0])) != 0) {
		X509_free(x);
		x = NULL;
	}
	if (!x)
		kr_seterr(errmsg, "cannot create the certificate for %s: %s",
			   node_id, tls_ssl_reason());
	return x;
}

static int tls_make_dir(const char *dir, char **errmsg)
{
	char why[128];
	int err;

	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	err = errno;
	kr_seterr(errmsg, "cannot create directory %s: %s", dir,
		   tls_strerror(err, why, sizeof(why)));
	return -err;
}

int tls_ca_init(const char *dir, bool force, char **errmsg)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	rc = tls_make_dir(dir, errmsg);
	if (rc)
		goto out;
	rc = -EIO;
	key = tls_keygen(errmsg);
	if (!key)
		goto out;
	cert = tls_make_ca(key, errmsg);
	if (!cert)
		goto out;
	rc = tls_write_pair(dir, TLS_CA_KEY, key, TLS_CA_CERT, cert, force,
			    errmsg);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

/* ---- reading files ---- */

/* Never prompt: an agent has no terminal, and our keys carry no passphrase. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

static FILE *tls_open(const char *path, const char *what, int *rc,
		      char **errmsg)
{
	char why[128];
	FILE *fp = fopen(path, "re");

	if (!fp) {
		*rc = -errno;
		kr_seterr(errmsg, "cannot read %s %s: %s", what, path,
			   tls_strerror(-*rc, why, sizeof(why)));
	}
	return fp;
}

/* A key only its owner can reach; the check is on the open file itself. */
static int tls_check_key_mode(FILE *fp, const char *path, char **errmsg)
{
	struct stat st;
	char why[128];

	if (fstat(fileno(fp), &st)) {
		int err = errno;

		kr_seterr(errmsg, "cannot read key %s: %s", path,
			   tls_strerror(err, why, sizeof(why)));
		return -err;
	}
	if (st.st_mode & 077) {
		kr_seterr(errmsg, "key %s is accessible by group or other "
			   "(mode %04o); run chmod 600 %s", path,
			   (unsigned)(st.st_mode & 07777), path);
		return -EACCES;
	}
	return 0;
}

int tls_read_key(const char *path, EVP_PKEY **out, char **errmsg)
{
	FILE *fp;
	int rc = 0;

	*out = NULL;
	fp = tls_open(path, "key", &rc, errmsg);
	if (!fp)
		return rc;
	rc = tls_check_key_mode(fp, path, errmsg);
	if (rc == 0) {
		*out = PEM_read_PrivateKey(fp, NULL, tls_no_passphrase, NULL);
		if (!*out) {
			kr_seterr(errmsg, "cannot load key %s: not an "
				   "unencrypted pem private key", path);
			rc = -EINVAL;
		}
	}
	fclose(fp);
	ERR_clear_error();
	return rc;
}

/* Every certificate in PATH, in file order; WHAT names it in messages. */
int tls_read_certs(const char *path, const char *what,
		   STACK_OF(X509) **out, char **errmsg)
{
	STACK_OF(X509) *certs = NULL;
	X509 *x;
	FILE *fp;
	int rc = 0;

	*out = NULL;
	fp = tls_open(path, what, &rc, errmsg);
	if (!fp)
		return rc;
	rc = -ENOMEM;
	certs = sk_X509_new_null();
	if (!certs)
		goto out;
	while ((x = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			goto out;
		}
	}
	rc = 0;
	if (sk_X509_num(certs) == 0) {
		kr_seterr(errmsg, "cannot load %s %s: no pem certificate in "
			   "it", what, path);
		rc = -EINVAL;
	}
out:
	fclose(fp);
	ERR_clear_error();
	if (rc == -ENOMEM)
		kr_seterr(errmsg, "out of memory reading %s", path);
	if (rc)
		sk_X509_pop_free(certs, X509_free);
	else
		*out = certs;
	return rc;
}

/* ---- issuing ---- */

static int tls_load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key,
		       char **errmsg)
{
	char *cert_path = tls_join(dir, TLS_CA_CERT);
	char *key_path = tls_join(dir, TLS_CA_KEY);
	STACK_OF(X509) *certs = NULL;
	int rc = -ENOMEM;

	if (!cert_path || !key_path)
		goto out;
	rc = tls_read_certs(cert_path, "ca", &certs, errmsg);
	if (rc)
		goto out;
	rc = tls_read_key(key_path, ca_key, errmsg);
	if (rc)
		goto out;
	*ca = sk_X509_shift(certs);
	if (X509_check_private_key(*ca, *ca_key) != 1) {
		kr_seterr(errmsg, "ca key %s does not match %s", key_path,
			   cert_path);
		rc = -EINVAL;
	}
out:
	sk_X509_pop_free(certs, X509_free);
	free(cert_path);
	free(key_path);
	ERR_clear_error();
	return rc;
}

int tls_issue(const char *dir, const char *node_id, bool force,
	      char **errmsg)
{
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *cert = NULL;
	int rc = -EINVAL;

	if (!node_id_ok(node_id, strlen(node_id))) {
		kr_seterr(errmsg, "invalid node id '%s': use 1 to %d of "
			   "a-z A-Z 0-9 . _ -", node_id, TLS_NODE_ID_MAX);
		goto out;
	}
	rc = tls_load_ca(dir, &ca, &ca_key, errmsg);
	if (rc)
		goto out;
	rc = -EIO;
	key = tls_keygen(errmsg);
	if (!key)
		goto out;
	cert = tls_make_node(key, node_id, ca, ca_key, errmsg);
	if (!cert)
		goto out;
	rc = tls_write_pair(dir, TLS_NODE_KEY, key, TLS_NODE_CERT, cert, force,
			    errmsg);
out:
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	ERR_clear_error();
	return rc;
}

char *tls_instructions(const char *dir, const char *node_id)
{
	char *text = NULL;
	int n;

	if (!node_id)
		n = asprintf(&text,
			"created %s/" TLS_CA_CERT " (the cluster certificate) "
			"and %s/" TLS_CA_KEY " (its key)\n"
			"for each node: copy both files into a directory of "
			"its own on that node (mode 700, e.g. "
			"/etc/krakenfs/tls) and run there\n"
			"    krakenfs-agent tls issue DIR NODE_ID\n"
			"whoever holds " TLS_CA_KEY " can add nodes to the "
			"cluster: delete it from each node once its "
			"certificate is issued, and keep one copy safe\n",
			dir, dir);
	else
		n = asprintf(&text,
			"created %s/" TLS_NODE_CERT " and %s/" TLS_NODE_KEY
			" for node %s\n"
			"on node %s, set in the sync.tls section: cert_file "
			"%s/" TLS_NODE_CERT ", key_file %s/" TLS_NODE_KEY
			", ca_file %s/" TLS_CA_CERT ", enable true\n",
			dir, dir, node_id, node_id, dir, dir, dir);
	return n < 0 ? NULL : text;
}

/* ---- contexts ---- */

/* Verifies our own chain now, so a wrong file fails at start-up. */
static int tls_check_own_chain(X509_STORE *store, STACK_OF(X509) *certs,
			       bool server, const char *cert_file,
			       const char *ca_file, char **errmsg)
{
	X509_STORE_CTX *sctx = X509_STORE_CTX_new();
	X509 *leaf = sk_X509_value(certs, 0);
	int rc = -ENOMEM;

	if (!sctx || !X509_STORE_CTX_init(sctx, store, leaf, certs))
		goto out;
	X509_STORE_CTX_set_purpose(sctx, server ? X509_PURPOSE_SSL_SERVER
						: X509_PURPOSE_SSL_CLIENT);
	rc = 0;
	if (X509_verify_cert(sctx) != 1) {
		kr_seterr(errmsg, "certificate %s does not verify against "
			   "ca %s: %s", cert_file, ca_file,
			   X509_verify_cert_error_string(
				   X509_STORE_CTX_get_error(sctx)));
		rc = -EACCES;
	}
out:
	X509_STORE_CTX_free(sctx);
	return rc;
}

static int tls_ctx_trust(SSL_CTX *ctx, STACK_OF(X509) *cas)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	int i;

	for (i = 0; i < sk_X509_num(cas); i++)
		if (!X509_STORE_add_cert(store, sk_X509_value(cas, i)))
			return -ENOMEM;
	return 0;
}

static int tls_ctx_identity(SSL_CTX *ctx, STACK_OF(X509) *certs,
			    EVP_PKEY *key, const char *cert_file,
			    const char *key_file, char **errmsg)
{
	int i;

	if (X509_check_private_key(sk_X509_value(certs, 0), key) != 1) {
		kr_seterr(errmsg, "key %s does not match certificate %s",
			   key_file, cert_file);
		return -EINVAL;
	}
	if (!SSL_CTX_use_certificate(ctx, sk_X509_value(certs, 0)) ||
	    !SSL_CTX_use_PrivateKey(ctx, key)) {
		kr_seterr(errmsg, "cannot use certificate %s: %s", cert_file,
			   tls_ssl_reason());
		return -EINVAL;
	}
	for (i = 1; i < sk_X509_num(certs); i++)
		if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i)))
			return -ENOMEM;
	return 0;
}

/* Settings that hold for both sides. */
static int tls_ctx_policy(SSL_CTX *ctx, bool server)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		return -EPROTO;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
			   (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   NULL);
	/* One long-lived connection per peer pair: resumption buys nothing
	 * and tickets would only be bytes to read after the handshake. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	/* Send only the node certificate and any intermediates from its
	 * file: the peer has the CA already, and a CA it lacks should be
	 * reported as unknown rather than as a stray self-signed one. */
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	/* AES-128-GCM first: a fifth faster than AES-256 with AES-NI, and
	 * bulk chunk traffic spends its CPU there; 128-bit keys are what
	 * TLS 1.3 itself ranks first. */
	if (!SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
				      "TLS_AES_256_GCM_SHA384:"
				      "TLS_CHACHA20_POLY1305_SHA256"))
		return -EPROTO;
	return 0;
}

SSL_CTX *tls_context_new(const char *cert_file, const char *key_file,
			 const char *ca_file, bool server, char **errmsg)
{
	STACK_OF(X509) *certs = NULL, *cas = NULL;
	EVP_PKEY *key = NULL;
	SSL_CTX *ctx = NULL;
	int rc;

	rc = tls_read_certs(cert_file, "certificate", &certs, errmsg);
	if (rc == 0)
		rc = tls_read_key(key_file, &key, errmsg);
	if (rc == 0)
		rc = tls_read_certs(ca_file, "ca", &cas, errmsg);
	if (rc)
		goto out;
	rc = -ENOMEM;
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx || tls_ctx_policy(ctx, server) || tls_ctx_trust(ctx, cas)) {
		kr_seterr(errmsg, "cannot set up tls: %s", tls_ssl_reason());
		goto out;
	}
	rc = tls_ctx_identity(ctx, certs, key, cert_file, key_file, errmsg);
	if (rc == 0)
		rc = tls_check_own_chain(SSL_CTX_get_cert_store(ctx), certs,
					 server, cert_file, ca_file, errmsg);
out:
	if (rc) {
		SSL_CTX_free(ctx);
		ctx = NULL;
		if (rc == -ENOMEM && errmsg && !*errmsg)
			kr_seterr(errmsg, "out of memory setting up tls");
	}
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

/* ---- peer identity ---- */

static int tls_copy_id(const ASN1_STRING *s, char *out, size_t cap)
{
	const char *data = (const char *)ASN1_STRING_get0_data(s);
	int len = ASN1_STRING_length(s);

	/* The charset check also refuses an embedded NUL. */
	if (len < 0 || !node_id_ok(data, (size_t)len))
		return -EPROTO;
	if ((size_t)len >= cap)
		return -ENAMETOOLONG;
	memcpy(out, data, (size_t)len);
	out[len] = '\0';
	return 0;
}

/* From the DNS subjectAltName entry, which must be alone if present. */
static int tls_san_node_id(X509 *x, char *out, size_t cap, bool *found)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name,
						NULL, NULL);
	const ASN1_STRING *dns = NULL;
	int i, rc = 0;

	for (i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type != GEN_DNS)
			continue;
		if (dns)
			rc = -EPROTO;   /* two names: which node is it? */
		dns = gn->d.dNSName;
	}
	*found = dns != NULL;
	if (dns && rc == 0)
		rc = tls_copy_id(dns, out, cap);
	GENERAL_NAMES_free(names);
	return rc;
}

int tls_cert_node_id(X509 *x, char *out, size_t cap)
{
	X509_NAME *subject = X509_get_subject_name(x);
	bool found;
	int rc, at;

	rc = tls_san_node_id(x, out, cap, &found);
	if (rc || found)
		return rc;
	at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName,
						  at) >= 0)
		return -EPROTO;
	return tls_copy_id(X509_NAME_ENTRY_get_data(
				X509_NAME_get_entry(subject, at)), out, cap);
}

int tls_peer_node_id(SSL *ssl, char *out, size_t cap)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);

	if (!peer)
		return -ENOTCONN;
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return -EACCES;
	return tls_cert_node_id(peer, out, cap);
}
