/*
 * Internals shared by the journal's source files; nothing outside
 * src/journal includes this.
 */
#ifndef KRAKEN_JOURNAL_INT_H
#define KRAKEN_JOURNAL_INT_H

#include "journal.h"

#include <sqlite3.h>

enum journal_stmt_id {
	STMT_INSERT_CHANGE,
	STMT_INSERT_BASE,
	STMT_INSERT_CONTENT,
	STMT_INSERT_CHUNK,
	STMT_LOOKUP,
	STMT_CURRENT_REF,
	STMT_UPSERT_CURRENT,
	STMT_TOUCH_CURRENT,
	STMT_BASES_OF,
	STMT_SAVEPOINT,
	STMT_RELEASE,
	STMT_ROLLBACK_TO,
	STMT_COUNT
};

struct journal {
	sqlite3 *db;
	bool readonly;
	bool in_txn;
	unsigned pending;         /* records since the last commit */
	int64_t origin_id;        /* row in origins for this node's epoch */
	uint64_t next_seq;
	uint64_t lamport;
	char node_id[JOURNAL_ORIGIN_MAX];
	char origin[JOURNAL_ORIGIN_MAX];
	sqlite3_stmt *stmt[STMT_COUNT];
};

/* SQLite result code to the project's vocabulary. */
int journal_db_err(int rc);
/* Prepared statement ID, reset and with bindings cleared. */
sqlite3_stmt *journal_stmt(struct journal *j, enum journal_stmt_id id);
/* Runs SQL without results; 0 or KR_EDB (logged at debug level). */
int journal_exec(struct journal *j, const char *sql);
/* Fills C from a row in the column order of JOURNAL_CHANGE_COLUMNS, and
 * its bases into the caller's BASES array (capacity CAP). */
#define JOURNAL_CHANGE_COLUMNS \
	"c.id, o.node || '@' || o.epoch, c.seq, c.lamport, c.wall_ns, " \
	"c.volume, c.path, c.op, c.mode, c.uid, c.gid, c.size, c.mtime_ns, " \
	"c.hash, c.target"
int journal_change_from_row(struct journal *j, sqlite3_stmt *row,
			    struct journal_change *c, struct journal_ref *bases,
			    size_t cap);

#endif
