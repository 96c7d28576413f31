/*
 * Peer credentials and TLS contexts.
 *
 * The scheme is a small private CA per cluster:
 *
 *     DIR/ca.pem         the cluster certificate (EC P-256, 10 years);
 *                        every node holds a copy and trusts only it
 *     DIR/ca-key.pem     its key; whoever holds it can add nodes
 *     DIR/node.pem       one node's certificate, CN and subjectAltName
 *                        DNS entry both the node id, signed by the CA,
 *                        usable as TLS server and client (5 years)
 *     DIR/node-key.pem   that node's key
 *
 * Keys are written mode 0600, certificates 0644, each through a temp file
 * renamed into place, and an existing file is never replaced unless
 * FORCE is given.  A key file that group or other may access is refused
 * when loading.
 *
 * Contexts speak TLS 1.3 only and require a certificate from the peer in
 * both directions, verified against the cluster CA alone.  A verified
 * chain proves only membership of the cluster: the session must still
 * compare tls_peer_node_id() with the node the peer claims in HELLO and
 * with the node it meant to reach.
 *
 * Errors come back as a negative code and, through ERRMSG, a malloc'd
 * lower-case sentence naming the file (free() it).
 */
#ifndef KRAKEN_TLS_H
#define KRAKEN_TLS_H

#include "nodeid.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
struct stack_st_X509;

#define TLS_CA_CERT "ca.pem"
#define TLS_CA_KEY "ca-key.pem"
#define TLS_NODE_CERT "node.pem"
#define TLS_NODE_KEY "node-key.pem"

#define TLS_NODE_ID_MAX NODE_ID_MAX   /* nodeid.h */

/*
 * Creates DIR (mode 0700) if missing, then a new CA in DIR/ca.pem and
 * DIR/ca-key.pem.  Without FORCE an existing file is an error (-EEXIST).
 * 0 or a negative code with *ERRMSG set.
 */
int tls_ca_init(const char *dir, bool force, char **errmsg);

/*
 * Issues DIR/node.pem and DIR/node-key.pem for NODE_ID, signed by the CA
 * in DIR.  -EINVAL for a malformed node id or a CA key that does not
 * match its certificate, -EEXIST as for tls_ca_init(), -EACCES for a CA
 * key others may read, or -errno.  *ERRMSG set on failure.
 */
int tls_issue(const char *dir, const char *node_id, bool force,
	      char **errmsg);

/*
 * What to do next, for the command line to print after tls_ca_init()
 * (NODE_ID NULL) or tls_issue().  Several lines, malloc'd; the caller
 * frees it.  NULL when out of memory.
 */
char *tls_instructions(const char *dir, const char *node_id);

/*
 * A context for one side of peer connections: this node's certificate
 * (CERT_FILE, optionally followed by intermediates), its key (KEY_FILE,
 * refused when group or other may access it), and the CA to verify
 * peers with (CA_FILE).  Checks at once that the key matches and that
 * the certificate verifies against the CA.  Returns a context the caller
 * frees with tls_context_free(), or NULL with *ERRMSG set.
 */
SSL_CTX *tls_context_new(const char *cert_file, const char *key_file,
			 const char *ca_file, bool server, char **errmsg);

/* NULL is ignored; transports keep their own reference. */
void tls_context_free(SSL_CTX *ctx);

/*
 * Copies the node id from the verified peer certificate of SSL into OUT
 * (CAP bytes): its subjectAltName DNS entry (there must be exactly one),
 * else its CN.  0; -ENOTCONN when there is no peer certificate yet;
 * -EACCES when it did not verify; -EPROTO when it names no valid node
 * id; -ENAMETOOLONG when OUT is too small.
 */
int tls_peer_node_id(SSL *ssl, char *out, size_t cap);

/* The same from certificate X, whoever presented it (checking it is the
 * caller's business). */
int tls_cert_node_id(X509 *x, char *out, size_t cap);

/* A private key file, refused when group or other may access it. */
int tls_read_key(const char *path, EVP_PKEY **out, char **errmsg);
/* Every certificate in PATH, in file order; WHAT names it in messages. */
int tls_read_certs(const char *path, const char *what,
		   struct stack_st_X509 **out, char **errmsg);

#endif
