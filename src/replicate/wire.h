/*
 * The peer wire format: framing, every message, and their encoders and
 * decoders.  Pure byte work: nothing here reads a socket or the journal.
 *
 * FRAME.  All integers are big-endian.
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------
 *        0     4  magic "KRFS"
 *        4     1  protocol version, WIRE_VERSION (1)
 *        5     1  message type (enum wire_type)
 *        6     2  flags, 0 (no flag is defined; any other value is refused)
 *        8     4  payload length N, at most the type's cap (see below)
 *       12     N  payload
 *
 * The header alone decides whether a frame is acceptable in size: a reader
 * parses the 12 header bytes and refuses a length past the cap before it
 * reads or allocates for the payload.  The general cap, WIRE_MAX_PAYLOAD,
 * is 4 MiB plus room for message overhead; small fixed messages have their
 * own, smaller caps (wire_max_payload()).
 *
 * FIELDS.
 *
 *   u8 u16 u32 u64   unsigned integers; i64 is two's complement
 *   str              u16 byte length, then the bytes: no NUL on the wire,
 *                    none allowed inside.  Each string field has a cap:
 *                      node id      1..64, [A-Za-z0-9._-]
 *                      cluster id   1..255, UTF-8, no control characters
 *                      origin       NODE "@" 16 lowercase hex digits, NODE a
 *                                   node id (so at most 81 bytes)
 *                      volume       path_volume_name_ok() (at most 255)
 *                      path         path_check_rel() (at most PATH_REL_MAX);
 *                                   "" is the volume root
 *                      target       1..4095, UTF-8 (a symlink's text: it may
 *                                   be absolute or hold "..", which is the
 *                                   link's business, never a place we write)
 *                      error text   0..1024, UTF-8, no control characters
 *   hash             32 bytes, a SHA-256 (CONTENT_HASH_LEN)
 *   ref              origin str, u64 seq
 *
 * MESSAGES.  The payload of each type, field after field:
 *
 *   type  name           payload
 *   ----  -------------  ----------------------------------------------
 *      1  HELLO          str node_id, str cluster_id, u32 features,
 *                        u32 n, n x ref (origin, max seq: the vector);
 *                        feature bit 0 (OWN_FIRST): the first ref is the
 *                        sender's own origin, seq 0 if it wrote nothing
 *      2  VECTOR         u32 n, n x ref
 *      3  ENTRIES        u32 n, n x entry (below)
 *      4  GET_CHUNKLIST  hash content, u32 start index, u8 has_base (0/1),
 *                        [hash base: a content the asker holds the list
 *                        of, typically the version being replaced]
 *      5  CHUNKLIST      hash content, u64 file size, u32 total chunks,
 *                        u32 start, u8 has_base, [hash base], u32 n,
 *                        n x item; an item is
 *                          u8 0, hash chunk, u32 len (1..WIRE_MAX_CHUNK)
 *                          u8 1, u32 index, u32 count (1..total): COUNT
 *                                chunks of the base's list from INDEX on
 *                        (kind 1 only with has_base).  Items expand to
 *                        chunks start.. of the list; start + that <= total.
 *                        A list that repeats most of its base costs a
 *                        few bytes per run instead of 36 per chunk: the
 *                        edited 1 GiB file's list shrinks from 1 MB to
 *                        what changed.  The asker checks the whole list
 *                        against the content hash, so a wrong run can
 *                        only fail the transfer, never corrupt it.
 *      6  GET_CHUNKS     u32 n (1..WIRE_MAX_GET_CHUNKS), n x hash
 *      7  CHUNK          hash chunk, u32 len (1..WIRE_MAX_CHUNK), len bytes;
 *                        also sent unasked, right after the ENTRIES frame
 *                        announcing them, for recent files of at most
 *                        8 KiB: such a file is one chunk, whose content
 *                        hash is the SHA-256 of the chunk's hash, so the
 *                        receiver can use it without a list or drop it
 *      8  NOT_HERE       hash chunk
 *      9  PING           u64 token
 *     10  PONG           u64 token (the PING's)
 *     11  ERROR          u16 code (enum wire_error_code, others allowed),
 *                        str text
 *     12  CHANGING       str volume, str path, hash base, u64 size: the
 *                        sender is hashing a new version of a file whose
 *                        current content there is BASE (now SIZE bytes);
 *                        a receiver holding BASE at that path may start
 *                        copying it for the version to come.  Sent only
 *                        to a peer whose HELLO has feature bit 1
 *                        (CHANGING): an older peer refuses the type
 *     13  GET_DELTA      hash chunk, u32 len (1..WIRE_MAX_CHUNK),
 *                        delta_blocks(len) x 8-byte digest: the asker
 *                        lacks the chunk but holds LEN bytes like it;
 *                        digest i names its block i (delta.h)
 *     14  DELTA          hash chunk, u32 len (1..WIRE_MAX_CHUNK),
 *                        map (delta_map_len(len) bytes), then the bytes
 *                        of every block the map does not mark
 *                        (delta_literal_len; a set bit past the last
 *                        block is malformed).  The answer to GET_DELTA;
 *                        NOT_HERE when the chunk is not here.  Both only
 *                        between peers whose HELLO has feature bit 2
 *                        (DELTA)
 *
 *     15  STATE_BEGIN    u32 n, n x ref: the sender's whole version
 *                        vector (floors included), sent instead of
 *                        ENTRIES to a peer whose vector is below what
 *                        the sender compacted (journal.h, state
 *                        exchange); STATE frames follow
 *     16  STATE          u32 n, n x entry: heads of the sender, in
 *                        (volume, path) order; the receiver stages them
 *     17  STATE_END      u64 count of entries in the STATE frames: the
 *                        receiver applies what it staged if it got all
 *     18  ACK            u32 n, n x ref: the sender's vector, every few
 *                        seconds while it changes: its acknowledgement,
 *                        which lets the receiver compact what every peer
 *                        holds.  The receiver keeps per origin the highest
 *                        seq it was told, so an ACK may name only the
 *                        origins that changed since the sender's last
 *                        VECTOR or ACK on the connection (n may be 0).
 *                        15-18 only between peers whose HELLO has
 *                        feature bit 3 (STATE)
 *     19  CLOCK          u64 token (a PING's), i64 wall_ns: the sender's
 *                        clock when it answered that PING, sent right
 *                        after its PONG; the PING's sender learns the
 *                        offset of the two clocks.  Only to a peer whose
 *                        HELLO has feature bit 6 (CLOCK)
 *     20  CHAIN_ENTRIES  u32 n, n x chained entry (below): ENTRIES whose
 *                        entries carry their place in their origin's
 *                        hash chain and, where a signed segment ends,
 *                        its signature
 *     21  CHAIN_STATE    u32 n, n x proven entry (below): STATE whose
 *                        heads carry their proofs; a run of heads of
 *                        one segment is never split between frames
 *     22  KEY            u16 len (1..WIRE_CERT_MAX, 4096), len bytes: a
 *                        DER X.509 certificate of a key that signs
 *                        segments (not parsed here; the wire only
 *                        bounds it)
 *     23  SEALS          u32 n, n x (ref, hash chain, hash key_id, u16
 *                        sig_len (1..WIRE_SIG_MAX), sig): the origins'
 *                        signatures of their chain hash at the seq of
 *                        the ref, proving the STATE_BEGIN vector's
 *                        entries the heads did not; sent between the
 *                        last STATE frame and STATE_END.  20-23 only to
 *                        a peer whose HELLO has feature bit 7 (CHAIN)
 *     24  ASK_KEPT       u64 token, str volume, str path (non-empty),
 *                        u32 n (1..WIRE_MAX_ASK_KEPT, 256), n x hash
 *                        content: which of these versions of the file
 *                        the receiver could serve (its live file or its
 *                        version store), so that a user listing them
 *                        learns which node a restore can come from
 *     25  KEPT           u64 token (the ASK_KEPT's), u32 n (0..256),
 *                        n x u8 (0: not there, 1: there), in the order
 *                        asked.  24-25 only to a peer whose HELLO has
 *                        feature bit 8 (KEPT)
 *
 *   entry: ref (origin, seq > 0), u64 lamport (at most
 *          JOURNAL_LAMPORT_MAX, 2^62), i64 wall_ns, str volume,
 *          str path, u8 op (enum journal_op, 1..7), u32 mode, u32 uid,
 *          u32 gid, u64 size, i64 mtime_ns, u8 has_hash (0/1), [hash],
 *          u8 has_target (0/1), [str target], u16 n_bases (0..64),
 *          n_bases x ref
 *
 *   proven entry: entry, hash prev, u16 n_after (0..127), n_after x
 *          hash (the digests of the origin's changes after it, up to
 *          the next entry of the run or the signature), then seg_end
 *          and the rest as in a chained entry; with seg_end the
 *          signature is at seq + n_after (src/journal/exchange_proof.c)
 *
 *   chained entry: entry, hash prev (the chain hash of the origin's
 *          previous entry), u8 seg_end (0/1), and when seg_end:
 *          hash key_id, u16 sig_len (0..WIRE_SIG_MAX, 512), sig_len
 *          bytes of signature.  A seg_end entry closes a segment: with
 *          sig_len 0 it is unsigned (a plaintext cluster) and its key_id
 *          is all zeros; with a signature, key_id names the signing key
 *          and is not all zeros.  Anything in between is malformed: an
 *          end must say plainly whether it is signed.
 *
 * An entry's fields must agree with each other where the journal makes the
 * answer obvious:
 *
 *   op                 mode type       path         other
 *   -----------------  --------------  -----------  ----------------------
 *   PUT                S_IFREG         non-empty    has_hash
 *   MKDIR              S_IFDIR         non-empty
 *   SYMLINK            S_IFLNK         non-empty    has_target
 *   DELETE             0 (all bits)    non-empty
 *   META               REG, DIR, LNK   "" only DIR  (keeps hash or target)
 *   VOLUME_CREATE      S_IFDIR or 0    ""
 *   VOLUME_REMOVE      0 (all bits)    ""
 *   any                                             has_hash: S_IFREG only,
 *                                                   has_target: S_IFLNK only
 *
 * META may name the volume root because a chmod of the root is recorded
 * that way, and VOLUME_CREATE may carry mode 0 because the journal accepts
 * a volume created without a stat.  The wire must accept whatever a peer's
 * journal can legitimately hold: an entry refused here would be offered
 * again forever and stall its origin's gapless sequence.
 *
 * DECODING.  Every field is checked before it is used.  A payload must be
 * consumed exactly; counts are checked against the bytes left (at the
 * smallest size their items can take) before anything is allocated, so
 * memory follows the bytes actually received: a decoded message takes
 * under four and a half times its payload (about 18 MB for the largest
 * ENTRIES of the shortest entries, 16 MB for the largest VECTOR of the
 * shortest origins), whatever its counts claim.  Errors:
 *
 *   -EPROTO            malformed: truncated, trailing bytes, bad count,
 *                      bad origin or node id, op out of range, seq 0, a
 *                      Lamport value past JOURNAL_LAMPORT_MAX, a
 *                      flag byte other than 0/1, fields that disagree
 *                      (a signature and its key id included), a length
 *                      past its field's cap, unknown type or non-zero
 *                      header flags
 *   KR_EHOSTILE        a volume name or path that could leave its volume,
 *                      including one with a NUL or over its length cap
 *                      (the caller logs "hostile path" and drops the peer)
 *   -EMSGSIZE          a payload longer than its type allows
 *   -EPROTONOSUPPORT   another protocol version (so the peer can be told
 *                      apart from one sending garbage)
 *   -ENOMEM
 *
 * Threads: no state is shared; each buffer and message belongs to its
 * caller.
 */
#ifndef KRAKEN_WIRE_H
#define KRAKEN_WIRE_H

#include "content.h"
#include "delta.h"
#include "journal.h"
#include "nodeid.h"
#include "path.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC "KRFS"
#define WIRE_VERSION 1
#define WIRE_HEADER_LEN 12
#define WIRE_MAX_PAYLOAD ((4u << 20) + (64u << 10))
#define WIRE_MAX_CHUNK (1u << 20)
#define WIRE_MAX_GET_CHUNKS 1024
#define WIRE_MAX_BASES 64
#define WIRE_NODE_ID_MAX NODE_ID_MAX
#define WIRE_CLUSTER_ID_MAX 255
#define WIRE_TARGET_MAX 4095
#define WIRE_TEXT_MAX 1024
#define WIRE_SIG_MAX 512
#define WIRE_CERT_MAX 4096
#define WIRE_MAX_ASK_KEPT 256

/* Largest encoding of one entry, every string and base at its cap: an
 * ENTRIES or STATE budget of at least 4 + WIRE_ENTRY_MAX always takes one
 * entry.  A chained entry adds at most WIRE_CHAIN_EXTRA (prev, seg_end,
 * key_id, sig_len and the largest signature): a CHAIN_ENTRIES or
 * CHAIN_STATE budget of at least 4 + WIRE_ENTRY_MAX + WIRE_CHAIN_EXTRA
 * always takes one. */
#define WIRE_REF_MAX (2 + (JOURNAL_ORIGIN_MAX - 1) + 8)
#define WIRE_ENTRY_MAX (WIRE_REF_MAX + 8 + 8 + (2 + VOLUME_NAME_MAX) + \
			(2 + PATH_REL_MAX) + 1 + 4 + 4 + 4 + 8 + 8 + \
			(1 + CONTENT_HASH_LEN) + (1 + 2 + WIRE_TARGET_MAX) + \
			2 + WIRE_MAX_BASES * WIRE_REF_MAX)
#define WIRE_CHAIN_EXTRA (CONTENT_HASH_LEN + 1 + CONTENT_HASH_LEN + 2 + \
			  WIRE_SIG_MAX)
/* What a proven entry (CHAIN_STATE) adds to a chained one. */
#define WIRE_AFTER_MAX (JOURNAL_SEGMENT_MAX - 1)
#define WIRE_PROOF_EXTRA (2 + WIRE_AFTER_MAX * CONTENT_HASH_LEN)
#define WIRE_SEAL_MAX (WIRE_REF_MAX + 2 * CONTENT_HASH_LEN + 2 + \
		       WIRE_SIG_MAX)

struct wire_arena;

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_VECTOR,
	WIRE_ENTRIES,
	WIRE_GET_CHUNKLIST,
	WIRE_CHUNKLIST,
	WIRE_GET_CHUNKS,
	WIRE_CHUNK,
	WIRE_NOT_HERE,
	WIRE_PING,
	WIRE_PONG,
	WIRE_ERROR,
	WIRE_CHANGING,
	WIRE_GET_DELTA,
	WIRE_DELTA,
	WIRE_STATE_BEGIN,
	WIRE_STATE,
	WIRE_STATE_END,
	WIRE_ACK,
	WIRE_CLOCK,
	WIRE_CHAIN_ENTRIES,
	WIRE_CHAIN_STATE,
	WIRE_KEY,
	WIRE_SEALS,
	WIRE_ASK_KEPT,
	WIRE_KEPT,
};
#define WIRE_TYPE_LAST WIRE_KEPT

/* ERROR codes this version sends; a receiver must accept any other. */
enum wire_error_code {
	WIRE_ERR_PROTOCOL = 1,    /* a frame failed to decode */
	WIRE_ERR_VERSION,         /* protocol version not spoken here */
	WIRE_ERR_CLUSTER,         /* HELLO named another cluster */
	WIRE_ERR_IDENTITY,        /* node id not in this cluster, or not the
				   * one the TLS certificate proves */
	WIRE_ERR_INTERNAL,        /* the sender failed; try again later */
};

/*
 * A growing byte buffer that encoders append whole frames to.  Zero it to
 * start.  It has no cap of its own: each frame is capped, and how many
 * frames to queue is the sender's decision.
 */
struct wire_buf {
	uint8_t *data;
	size_t len, cap;
};

/* Forgets the content, keeps the memory. */
void wire_buf_reset(struct wire_buf *b);
/* Frees the memory and zeroes *b. */
void wire_buf_release(struct wire_buf *b);

/*
 * One journal change as it travels.  ref is (origin, seq); bases are the
 * versions it replaced.  target is NULL unless has_target.
 *
 * The chain fields travel only in CHAIN_ENTRIES and CHAIN_STATE: the
 * decoder sets chained there and leaves them zero elsewhere.  Encoders
 * go by the frame, not by chained: a chained frame writes them from every
 * entry, a plain one drops them.  key_id, sig_len and sig are only
 * looked at with seg_end; sig is NULL when sig_len is 0.
 */
struct wire_entry {
	struct journal_ref ref;
	uint64_t lamport;
	int64_t wall_ns;
	const char *volume;
	const char *path;
	enum journal_op op;
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	bool has_target;
	const char *target;
	uint16_t n_bases;
	const struct journal_ref *bases;
	bool chained;                      /* CHAIN_ENTRIES/CHAIN_STATE only */
	/* The chain hash of the origin's previous entry. */
	uint8_t prev[CONTENT_HASH_LEN];
	bool seg_end;                      /* ends a signed segment */
	/* With seg_end: the signing key; zeros when unsigned. */
	uint8_t key_id[CONTENT_HASH_LEN];
	/* With seg_end: 0 (unsigned, plaintext cluster) .. WIRE_SIG_MAX. */
	uint16_t sig_len;
	const uint8_t *sig;
	/* CHAIN_STATE only: the digests after it (journal_chain.after). */
	uint16_t n_after;
	const uint8_t (*after)[CONTENT_HASH_LEN];
};

/* A version vector: for each origin, in ref.seq, the largest seq held. */
struct wire_vector {
	uint32_t n;
	const struct journal_ref *refs;
};

/* The first vector ref is the sender's own origin: a receiver never
 * relays the sender the sender's own changes. */
#define WIRE_HELLO_OWN_FIRST (1u << 0)
/* The sender understands CHANGING. */
#define WIRE_HELLO_CHANGING (1u << 1)
/* The sender answers GET_DELTA. */
#define WIRE_HELLO_DELTA (1u << 2)
/* The sender takes STATE_BEGIN, STATE, STATE_END and ACK. */
#define WIRE_HELLO_STATE (1u << 3)
/* The sender is itself learning the history (its journal is new): what
 * it holds is no history to adopt a disk against. */
#define WIRE_HELLO_REJOINING (1u << 4)
/* The HELLO's vector holds only the sender's own origin; its whole
 * vector follows in a VECTOR frame once it has accepted the receiver's
 * HELLO (a stranger learns nothing of the cluster).  A receiver sends
 * nothing of the journal before that VECTOR.  Before HELLO a frame may
 * take 16 KiB (gate.c): an older agent, whose HELLO carries its whole
 * vector, cannot connect once it knows more than about 170 origins. */
#define WIRE_HELLO_VECTOR_NEXT (1u << 5)
/* The sender takes CLOCK. */
#define WIRE_HELLO_CLOCK (1u << 6)
/* The sender takes CHAIN_ENTRIES, CHAIN_STATE and KEY. */
#define WIRE_HELLO_CHAIN (1u << 7)
/* The sender answers ASK_KEPT. */
#define WIRE_HELLO_KEPT (1u << 8)

struct wire_clock {
	uint64_t token;           /* the PING's */
	int64_t wall_ns;          /* the answerer's wall clock */
};

struct wire_hello {
	const char *node_id;
	const char *cluster_id;
	uint32_t features;        /* WIRE_HELLO_*; unknown bits ignored */
	struct wire_vector vector;
};

struct wire_entry_list {
	uint32_t n;
	const struct wire_entry *v;
};

struct wire_get_chunklist {
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t start;
	bool has_base;
	uint8_t base[CONTENT_HASH_LEN];
};

/* A chunk (count 0), or a run of COUNT chunks of the base's list from
 * BASE_INDEX (hash and len unused). */
struct wire_chunk_ref {
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t len;
	uint32_t base_index;
	uint32_t count;
};

/* N items expanding to chunks START.. of the TOTAL making up content
 * HASH. */
struct wire_chunklist {
	uint8_t hash[CONTENT_HASH_LEN];
	uint64_t size;
	uint32_t total;
	uint32_t start;
	uint32_t n;
	const struct wire_chunk_ref *chunks;
	bool has_base;
	uint8_t base[CONTENT_HASH_LEN];
};

/* How many chunks L's items stand for. */
uint64_t wire_chunklist_span(const struct wire_chunklist *l);

struct wire_get_chunks {
	uint32_t n;
	const uint8_t (*hashes)[CONTENT_HASH_LEN];
};

struct wire_chunk {
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t len;
	const uint8_t *data;
};

struct wire_error {
	uint16_t code;
	const char *text;
};

/* A file about to get a new version (see CHANGING above). */
struct wire_changing {
	const char *volume;
	const char *path;         /* never "": a file */
	uint8_t base[CONTENT_HASH_LEN];
	uint64_t size;
};

/* A chunk asked for as a difference from LEN bytes the asker holds. */
struct wire_get_delta {
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t len;
	const uint8_t (*digests)[DELTA_DIGEST];   /* delta_blocks(len) */
};

/* The answer: the blocks MAP does not mark, DATA_LEN bytes at DATA. */
struct wire_delta {
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t len;
	const uint8_t *map;                       /* delta_map_len(len) */
	const uint8_t *data;
	uint32_t data_len;
};

/* A signing key's certificate (see KEY above): LEN bytes of DER. */
struct wire_key {
	uint16_t len;
	const uint8_t *der;
};

/* An origin's signature of its chain hash CHAIN at REF's seq. */
struct wire_seal {
	struct journal_ref ref;
	uint8_t chain[CONTENT_HASH_LEN];
	uint8_t key_id[CONTENT_HASH_LEN];
	uint16_t sig_len;
	const uint8_t *sig;
};

struct wire_seals {
	uint32_t n;
	const struct wire_seal *v;
};

/* Which of N versions (content hashes) of VOLUME/PATH the receiver has. */
struct wire_ask_kept {
	uint64_t token;
	const char *volume;
	const char *path;         /* never "": a file */
	uint32_t n;               /* 1..WIRE_MAX_ASK_KEPT */
	const uint8_t (*hashes)[CONTENT_HASH_LEN];
};

/* The answer: HERE[i] is 1 when the i-th version asked is there. */
struct wire_kept {
	uint64_t token;
	uint32_t n;               /* 0..WIRE_MAX_ASK_KEPT */
	const uint8_t *here;
};

/*
 * One message.  To encode, the caller fills type and the matching member
 * with pointers it owns.  Decoded, every pointer is owned by the message
 * and freed by wire_msg_release(), except chunk.data, key.der and the
 * arrays of get_delta and delta, which point into the payload passed to
 * wire_decode() and live as long as that buffer.  An entry's sig is the
 * message's like the rest of the entry: entries outlive the payload.
 */
struct wire_msg {
	enum wire_type type;
	union {
		struct wire_hello hello;           /* HELLO */
		struct wire_vector vector;         /* VECTOR, STATE_BEGIN, ACK */
		struct wire_entry_list entries;    /* ENTRIES, STATE, and
						    * CHAIN_ of both */
		struct wire_get_chunklist get_chunklist;
		struct wire_chunklist chunklist;
		struct wire_get_chunks get_chunks;
		struct wire_chunk chunk;
		uint8_t not_here[CONTENT_HASH_LEN];
		uint64_t token;                    /* PING, PONG, STATE_END */
		struct wire_clock clock;           /* CLOCK */
		struct wire_error error;
		struct wire_changing changing;
		struct wire_get_delta get_delta;
		struct wire_delta delta;
		struct wire_key key;               /* KEY */
		struct wire_seals seals;           /* SEALS */
		struct wire_ask_kept ask_kept;     /* ASK_KEPT */
		struct wire_kept kept;             /* KEPT */
	};
	struct wire_arena *arena;  /* private: what decoding allocated */
};

/*
 * Checks a frame header.  On success *type and *len say what to read next.
 * Returns 0, -EPROTO (bad magic, flags or type), -EPROTONOSUPPORT (another
 * version) or -EMSGSIZE (length past the cap for that type).
 */
int wire_header_parse(const uint8_t hdr[WIRE_HEADER_LEN],
		      enum wire_type *type, uint32_t *len);

/* Largest payload a frame of TYPE may announce; 0 for an unknown type. */
uint32_t wire_max_payload(enum wire_type type);

/*
 * Decodes the payload of a TYPE frame into *out, which the caller then
 * releases with wire_msg_release() (also after a failure, harmlessly).
 * Returns 0 or a code from the table at the top of this file.
 */
int wire_decode(enum wire_type type, const uint8_t *payload, size_t len,
		struct wire_msg *out);

/* Frees what decoding allocated and zeroes *m.  Zeroed messages are fine. */
void wire_msg_release(struct wire_msg *m);

/*
 * Appends M as one whole frame to B.  Fields are checked as the decoder
 * would: -EINVAL for what it calls -EPROTO, KR_EHOSTILE for bad volumes or
 * paths, -EMSGSIZE when the payload would pass its cap, -ENOMEM.  On
 * failure B holds exactly what it held before.
 */
int wire_encode(struct wire_buf *b, const struct wire_msg *m);

/*
 * A CHUNK payload built in place (the chunk's bytes read straight into an
 * output queue): WIRE_CHUNK_HEAD bytes written by wire_chunk_head(), then
 * the LEN bytes.  Decodes as wire_encode() of the same chunk would.
 * LEN must be 1..WIRE_MAX_CHUNK.
 */
#define WIRE_CHUNK_HEAD (CONTENT_HASH_LEN + 4)
void wire_chunk_head(uint8_t out[WIRE_CHUNK_HEAD],
		     const uint8_t hash[CONTENT_HASH_LEN], uint32_t len);

/*
 * Builds one ENTRIES frame (or STATE, CHAIN_ENTRIES, CHAIN_STATE) entry by
 * entry, for a sender that walks the journal and stops when the frame is
 * full:
 *
 *	wire_entries_begin(&e, &buf, budget);
 *	while (more && wire_entries_add(&e, &entry) == 0)
 *		...
 *	n = wire_entries_end(&e);
 *
 * The frame in B is whole and valid after every call, whatever it
 * returned.  Nothing else may be appended to B between begin and end.
 */
struct wire_entries {
	struct wire_buf *b;
	size_t start;             /* offset of the frame's header in b */
	size_t budget;            /* payload bytes allowed */
	uint32_t n;
	bool chained;             /* a CHAIN_ frame: entries carry the chain */
	bool proven;              /* CHAIN_STATE: and their proofs */
};

/*
 * Appends an empty ENTRIES frame.  BUDGET caps its payload; values past
 * WIRE_MAX_PAYLOAD mean WIRE_MAX_PAYLOAD.  Returns 0 or -ENOMEM.
 */
int wire_entries_begin(struct wire_entries *e, struct wire_buf *b,
		       size_t budget);
/* The same for a STATE frame. */
int wire_state_begin(struct wire_entries *e, struct wire_buf *b,
		     size_t budget);
/* The same for CHAIN_ENTRIES and CHAIN_STATE: every entry added carries
 * its chain fields, whatever its chained says. */
int wire_chain_entries_begin(struct wire_entries *e, struct wire_buf *b,
			     size_t budget);
int wire_chain_state_begin(struct wire_entries *e, struct wire_buf *b,
			   size_t budget);
/*
 * Appends one entry.  Returns 0; -EMSGSIZE when it would take the payload
 * past the budget (the frame is unchanged: send it and start another);
 * -EINVAL or KR_EHOSTILE for an entry the decoder would refuse; -ENOMEM.
 */
int wire_entries_add(struct wire_entries *e, const struct wire_entry *ent);
/* Finishes the frame and returns how many entries it holds. */
uint32_t wire_entries_end(struct wire_entries *e);

/* An entry as it travels, from a journal change and back; every pointer
 * is the source's (borrowed).  Bases past WIRE_MAX_BASES are cut. */
void wire_entry_from_change(const struct journal_change *c,
			    struct wire_entry *w);
void wire_entry_to_change(const struct wire_entry *w,
			  struct journal_change *c);

/* "HELLO", "VECTOR", ...; "unknown" for anything else. */
const char *wire_type_name(enum wire_type t);

#endif
