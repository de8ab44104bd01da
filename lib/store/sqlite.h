// RAII for SQLite: one connection (SqliteDb), prepared statements kept for the life of
// the connection (SqliteStmt), one use of a statement (SqliteQuery) and a write
// transaction (SqliteDb::Transact).
//
// A statement is prepared once and reused. Every use goes through a SqliteQuery, which
// resets the statement and clears its bindings when it goes out of scope, so a cached
// statement never keeps a read transaction open nor leaks a binding into its next use.
//
// Errors come back as a Status that names the database file and says what is wrong:
// "database /x/petrel.db: disk full", "database /x/petrel.db: file is not a database".
//
// Thread-safety: none; a connection and its statements belong to one owner.
#ifndef PETREL_LIB_STORE_SQLITE_H_
#define PETREL_LIB_STORE_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "petrel/status.h"

namespace petrel::internal {

class SqliteDb;

// A prepared statement owned for the life of its connection.
class SqliteStmt {
 public:
  SqliteStmt() = default;
  ~SqliteStmt() { sqlite3_finalize(stmt_); }
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;

  // REQUIRES: not prepared yet; `db` is open and outlives this statement.
  Status Prepare(SqliteDb* db, const char* sql);

 private:
  friend class SqliteQuery;
  SqliteDb* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// One use of a prepared statement: bind parameters in order (?1, ?2, ...), step, read
// columns. The statement is reset and its bindings cleared when the query goes out of
// scope. A failed bind is reported by the next Next() or Run().
class SqliteQuery {
 public:
  explicit SqliteQuery(SqliteStmt* stmt) : stmt_(stmt) {}
  ~SqliteQuery();
  SqliteQuery(const SqliteQuery&) = delete;
  SqliteQuery& operator=(const SqliteQuery&) = delete;

  SqliteQuery& Bind(int64_t value);
  SqliteQuery& Bind(std::string_view value);  // copied by SQLite

  // Steps once: *has_row is true when a result row is ready to read.
  Status Next(bool* has_row);
  // Steps until the statement is done, ignoring any result rows.
  Status Run();

  int64_t Int64(int column) const;
  int Int(int column) const;
  std::string Text(int column) const;

 private:
  SqliteStmt* stmt_;
  int next_param_ = 1;
  int bind_rc_ = SQLITE_OK;
};

// When SqliteDb::Transact commits a successful body.
enum class SqliteCommit {
  kIfRowsChanged,  // only when the body changed a row; otherwise nothing is written
  kAlways,         // also when only the schema or pragmas changed (migrations)
};

// One connection to a database file.
class SqliteDb {
 public:
  SqliteDb() = default;
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Opens `path` read-write, creating the file if missing, with extended result codes
  // and a busy timeout so a second connection waits for a lock instead of failing.
  // REQUIRES: not open yet.
  Status Open(const std::string& path, int busy_timeout_ms);

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // Runs SQL that takes no parameters (pragmas, DDL, several statements at once).
  Status Exec(const char* sql);
  // Runs a one-off query that takes no parameters and sets *value to the first column
  // of its first row (0 or "" when there is no row).
  Status QueryInt(const char* sql, int64_t* value);
  Status QueryText(const char* sql, std::string* value);

  // Runs `body` in a BEGIN IMMEDIATE transaction. When `body` or the commit fails the
  // transaction is rolled back and the failure returned: nothing of it remains. Unless
  // `when` is kAlways, a body that changed no row is rolled back as well, so a write
  // that changes nothing writes nothing.
  Status Transact(const std::function<Status()>& body,
                  SqliteCommit when = SqliteCommit::kIfRowsChanged);

  // The Status for a failed SQLite result code `rc` on this connection.
  Status Error(int rc) const;

 private:
  void Rollback();

  sqlite3* db_ = nullptr;
  std::string path_;
  SqliteStmt begin_;
  SqliteStmt commit_;
  SqliteStmt rollback_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_STORE_SQLITE_H_
