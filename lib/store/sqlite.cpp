#include "lib/store/sqlite.h"

#include <cerrno>
#include <cstring>
#include <limits>

namespace petrel::internal {

Status SqliteStmt::Prepare(SqliteDb* db, const char* sql) {
  db_ = db;
  int rc = sqlite3_prepare_v3(db->handle(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) return db->Error(rc);
  return Status::OK();
}

SqliteQuery::~SqliteQuery() {
  sqlite3_reset(stmt_->stmt_);
  sqlite3_clear_bindings(stmt_->stmt_);
}

SqliteQuery& SqliteQuery::Bind(int64_t value) {
  int rc = sqlite3_bind_int64(stmt_->stmt_, next_param_++, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

SqliteQuery& SqliteQuery::Bind(std::string_view value) {
  int rc = value.size() > static_cast<size_t>(std::numeric_limits<int>::max())
               ? SQLITE_TOOBIG
               : sqlite3_bind_text(stmt_->stmt_, next_param_++, value.data(),
                                   static_cast<int>(value.size()), SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Status SqliteQuery::Next(bool* has_row) {
  *has_row = false;
  if (bind_rc_ != SQLITE_OK) return stmt_->db_->Error(bind_rc_);
  int rc = sqlite3_step(stmt_->stmt_);
  if (rc == SQLITE_ROW) {
    *has_row = true;
    return Status::OK();
  }
  if (rc == SQLITE_DONE) return Status::OK();
  return stmt_->db_->Error(rc);
}

Status SqliteQuery::Run() {
  bool has_row = true;
  while (has_row) PETREL_RETURN_IF_ERROR(Next(&has_row));
  return Status::OK();
}

int64_t SqliteQuery::Int64(int column) const { return sqlite3_column_int64(stmt_->stmt_, column); }

int SqliteQuery::Int(int column) const { return sqlite3_column_int(stmt_->stmt_, column); }

std::string SqliteQuery::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_->stmt_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_->stmt_, column)));
}

SqliteDb::~SqliteDb() {
  // close_v2 defers the close until the statements still prepared are finalized.
  sqlite3_close_v2(db_);
}

Status SqliteDb::Open(const std::string& path, int busy_timeout_ms) {
  path_ = path;
  int rc =
      sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return Error(rc);
  sqlite3_extended_result_codes(db_, 1);
  rc = sqlite3_busy_timeout(db_, busy_timeout_ms);
  if (rc != SQLITE_OK) return Error(rc);
  PETREL_RETURN_IF_ERROR(begin_.Prepare(this, "BEGIN IMMEDIATE"));
  PETREL_RETURN_IF_ERROR(commit_.Prepare(this, "COMMIT"));
  return rollback_.Prepare(this, "ROLLBACK");
}

Status SqliteDb::Exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Error(rc);
  return Status::OK();
}

Status SqliteDb::QueryInt(const char* sql, int64_t* value) {
  SqliteStmt stmt;
  PETREL_RETURN_IF_ERROR(stmt.Prepare(this, sql));
  SqliteQuery q(&stmt);
  bool has_row = false;
  PETREL_RETURN_IF_ERROR(q.Next(&has_row));
  *value = has_row ? q.Int64(0) : 0;
  return Status::OK();
}

Status SqliteDb::QueryText(const char* sql, std::string* value) {
  SqliteStmt stmt;
  PETREL_RETURN_IF_ERROR(stmt.Prepare(this, sql));
  SqliteQuery q(&stmt);
  bool has_row = false;
  PETREL_RETURN_IF_ERROR(q.Next(&has_row));
  *value = has_row ? q.Text(0) : std::string();
  return Status::OK();
}

Status SqliteDb::Transact(const std::function<Status()>& body, SqliteCommit when) {
  PETREL_RETURN_IF_ERROR(SqliteQuery(&begin_).Run());
  const int64_t changes_before = sqlite3_total_changes64(db_);
  Status s = body();
  if (s.ok() && (when == SqliteCommit::kAlways || sqlite3_total_changes64(db_) != changes_before)) {
    s = SqliteQuery(&commit_).Run();
  }
  // After a failed body or commit, or when nothing changed. SQLite may already have
  // rolled back on its own (e.g. after SQLITE_FULL).
  if (!sqlite3_get_autocommit(db_)) Rollback();
  return s;
}

void SqliteDb::Rollback() {
  // A failed ROLLBACK leaves SQLite to roll back when the connection next reads or
  // closes; the caller already reports the error that led here.
  (void)SqliteQuery(&rollback_).Run();
}

Status SqliteDb::Error(int rc) const {
  const int primary = rc & 0xff;
  const std::string prefix = "database " + path_ + ": ";
  // The OS errno behind the last failed I/O; only meaningful for I/O failures.
  const int sys = (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN) && db_ != nullptr
                      ? sqlite3_system_errno(db_)
                      : 0;
  if (primary == SQLITE_FULL || sys == ENOSPC) return Status::Unavailable(prefix + "disk full");
  std::string what =
      db_ != nullptr && sqlite3_errcode(db_) == rc ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  if (sys != 0) what += std::string(" (") + std::strerror(sys) + ")";
  switch (primary) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Status::Corruption(prefix + what);
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::Unavailable(prefix + what);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_PROTOCOL: return Status::IOError(prefix + what);
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_CONSTRAINT: return Status::InvalidArgument(prefix + what);
    default: return Status::Internal(prefix + what);
  }
}

}  // namespace petrel::internal
