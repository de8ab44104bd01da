#include "lib/store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

#include "lib/store/sqlite.h"
#include "lib/util/fs.h"

namespace petrel::internal {
namespace {

constexpr char kDbFile[] = "petrel.db";
constexpr int kBusyTimeoutMs = 5000;

// Forward migrations: step i takes the schema from version i-1 to i. A released step is
// never edited; a schema change appends a step and bumps Store::kSchemaVersion.
constexpr const char* kMigrations[] = {
    // Version 1: the initial schema.
    R"sql(
CREATE TABLE workloads (
  name       TEXT PRIMARY KEY NOT NULL,
  spec_json  TEXT NOT NULL,
  spec_hash  TEXT NOT NULL,
  generation INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE replicas (
  workload       TEXT NOT NULL REFERENCES workloads(name) ON DELETE CASCADE,
  idx            INTEGER NOT NULL,
  phase          TEXT NOT NULL,
  container_id   TEXT NOT NULL,
  pid            INTEGER NOT NULL,
  restarts       INTEGER NOT NULL,
  last_exit_code INTEGER NOT NULL,
  message        TEXT NOT NULL,
  since          INTEGER NOT NULL,
  next_retry     INTEGER NOT NULL,
  failures       INTEGER NOT NULL,
  spec_hash      TEXT NOT NULL,
  PRIMARY KEY (workload, idx)
) WITHOUT ROWID;
-- A ring: the event with sequence number seq lives in slot seq % capacity.
CREATE TABLE events (
  slot     INTEGER PRIMARY KEY,
  seq      INTEGER NOT NULL UNIQUE,
  time     INTEGER NOT NULL,
  workload TEXT NOT NULL,
  replica  INTEGER NOT NULL,
  type     TEXT NOT NULL,
  message  TEXT NOT NULL
);
)sql",
    // Version 2: when a workload was first applied (kubectl's AGE).
    R"sql(
ALTER TABLE workloads ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
UPDATE workloads SET created_at = updated_at;
)sql",
    // Version 3: a deleted workload stays (Terminating) until its last container is gone.
    R"sql(
ALTER TABLE workloads ADD COLUMN deleted_at INTEGER NOT NULL DEFAULT 0;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == Store::kSchemaVersion,
              "one migration step per schema version");

constexpr char kReplicaColumns[] =
    "workload, idx, phase, container_id, pid, restarts, last_exit_code, message, since, "
    "next_retry, failures, spec_hash";

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(int64_t capacity) : capacity_(capacity) {}

  Status Init(const std::string& path);

  Status PutWorkloads(const std::vector<WorkloadRow>& rows, std::vector<PutOutcome>* outcomes,
                      std::vector<int64_t>* generations) override;
  Status DeleteWorkload(const std::string& name, TimeMs now) override;
  Status LoadWorkloads(std::vector<WorkloadRow>* rows) override;
  Status LoadReplicas(std::vector<ReplicaStatus>* rows) override;
  Status WriteObserved(const std::vector<ReplicaStatus>& upserts,
                       const std::vector<std::pair<std::string, int>>& deletes,
                       const std::vector<Event>& events,
                       const std::vector<std::string>& purges) override;
  Status LoadEvents(int64_t after_seq, size_t limit, std::vector<Event>* events) override;
  int64_t LastEventSeq() override { return last_event_seq_; }
  int64_t TotalChanges() override { return sqlite3_total_changes64(db_.handle()); }

 private:
  Status CheckSchemaVersion(int64_t version);
  // Brings the schema from `version` (read before) to kSchemaVersion.
  Status Migrate(int64_t version);
  Status FitEventRing();
  Status PrepareStatements();
  // SqliteDb::Transact, committed with synchronous=FULL: when it returns OK, the change
  // survives a power cut.
  Status TransactDurably(const std::function<Status()>& body,
                         SqliteCommit when = SqliteCommit::kIfRowsChanged);

  const int64_t capacity_;
  int64_t last_event_seq_ = 0;
  SqliteDb db_;
  SqliteStmt sync_full_;
  SqliteStmt sync_normal_;
  SqliteStmt get_workload_;
  SqliteStmt put_workload_;
  SqliteStmt delete_workload_;
  SqliteStmt purge_workload_;
  SqliteStmt load_workloads_;
  SqliteStmt load_replicas_;
  SqliteStmt put_replica_;
  SqliteStmt delete_replica_;
  SqliteStmt put_event_;
  SqliteStmt load_events_;
};

Status SqliteStore::Init(const std::string& path) {
  PETREL_RETURN_IF_ERROR(db_.Open(path, kBusyTimeoutMs));
  // The version is checked before anything is written, so a newer database is left
  // exactly as it was; this first read also tells a file that is not a database.
  int64_t version = 0;
  PETREL_RETURN_IF_ERROR(db_.QueryInt("PRAGMA user_version", &version));
  PETREL_RETURN_IF_ERROR(CheckSchemaVersion(version));
  if (sqlite3_db_readonly(db_.handle(), "main") == 1) {
    return Status::IOError("database " + path + ": not writable");
  }

  PETREL_RETURN_IF_ERROR(db_.Exec("PRAGMA foreign_keys=ON"));
  int64_t foreign_keys = 0;
  PETREL_RETURN_IF_ERROR(db_.QueryInt("PRAGMA foreign_keys", &foreign_keys));
  if (foreign_keys != 1) {
    return Status::NotSupported("database " + path + ": SQLite built without foreign keys");
  }
  std::string mode;
  PETREL_RETURN_IF_ERROR(db_.QueryText("PRAGMA journal_mode=WAL", &mode));
  if (mode != "wal") {
    return Status::NotSupported("database " + path + ": cannot use WAL (journal mode is '" + mode +
                                "')");
  }
  PETREL_RETURN_IF_ERROR(sync_full_.Prepare(&db_, "PRAGMA synchronous=FULL"));
  PETREL_RETURN_IF_ERROR(sync_normal_.Prepare(&db_, "PRAGMA synchronous=NORMAL"));
  PETREL_RETURN_IF_ERROR(SqliteQuery(&sync_normal_).Run());
  PETREL_RETURN_IF_ERROR(Migrate(version));
  PETREL_RETURN_IF_ERROR(FitEventRing());
  PETREL_RETURN_IF_ERROR(PrepareStatements());
  return db_.QueryInt("SELECT coalesce(max(seq), 0) FROM events", &last_event_seq_);
}

Status SqliteStore::CheckSchemaVersion(int64_t version) {
  if (version > kSchemaVersion) {
    return Status::FailedPrecondition("database " + db_.path() + " has schema version " +
                                      std::to_string(version) + ", newer than this petrel's " +
                                      std::to_string(kSchemaVersion) + "; upgrade petrel");
  }
  if (version < 0) {
    return Status::Corruption("database " + db_.path() + " has schema version " +
                              std::to_string(version));
  }
  return Status::OK();
}

Status SqliteStore::Migrate(int64_t version) {
  if (version == kSchemaVersion) return Status::OK();
  // Another process may be migrating the same file: the version read under the write
  // lock is the one that counts.
  auto migrate = [this]() -> Status {
    int64_t current = 0;
    PETREL_RETURN_IF_ERROR(db_.QueryInt("PRAGMA user_version", &current));
    PETREL_RETURN_IF_ERROR(CheckSchemaVersion(current));
    for (int64_t v = current + 1; v <= kSchemaVersion; ++v) {
      PETREL_RETURN_IF_ERROR(db_.Exec(kMigrations[v - 1]));
      const std::string set_version = "PRAGMA user_version=" + std::to_string(v);
      PETREL_RETURN_IF_ERROR(db_.Exec(set_version.c_str()));
    }
    return Status::OK();
  };
  return TransactDurably(migrate, SqliteCommit::kAlways).WithContext("migrate schema");
}

// When the capacity differs from the one the ring was written with, keeps the newest
// events that fit (those with seq > last - capacity) and moves each to slot seq % capacity.
// Costs one scan of the ring per Open; writes only when the capacity changed.
Status SqliteStore::FitEventRing() {
  const std::string capacity = std::to_string(capacity_);
  int64_t misplaced = 0;
  PETREL_RETURN_IF_ERROR(db_.QueryInt(
      ("SELECT EXISTS (SELECT 1 FROM events WHERE slot != seq % " + capacity + ")").c_str(),
      &misplaced));
  if (misplaced == 0) return Status::OK();
  // Rows are parked at negative slots first, which collide neither with the old slots
  // nor with each other.
  const std::string fit = "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - " +
                          capacity + ";" + "UPDATE events SET slot = -1 - slot;" +
                          "UPDATE events SET slot = seq % " + capacity + ";";
  return db_.Transact([&]() { return db_.Exec(fit.c_str()); })
      .WithContext("resize event log to " + capacity);
}

Status SqliteStore::PrepareStatements() {
  const std::string columns = kReplicaColumns;
  const std::string put_replica =
      "INSERT INTO replicas (" + columns +
      ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12"
      " WHERE EXISTS (SELECT 1 FROM workloads WHERE name = ?1)"
      " ON CONFLICT (workload, idx) DO UPDATE SET"
      " phase = excluded.phase, container_id = excluded.container_id, pid = excluded.pid,"
      " restarts = excluded.restarts, last_exit_code = excluded.last_exit_code,"
      " message = excluded.message, since = excluded.since, next_retry = excluded.next_retry,"
      " failures = excluded.failures, spec_hash = excluded.spec_hash"
      " WHERE (phase, container_id, pid, restarts, last_exit_code, message, since, next_retry,"
      " failures, spec_hash) IS NOT (excluded.phase, excluded.container_id, excluded.pid,"
      " excluded.restarts, excluded.last_exit_code, excluded.message, excluded.since,"
      " excluded.next_retry, excluded.failures, excluded.spec_hash)";
  const std::string load_replicas = "SELECT " + columns + " FROM replicas ORDER BY workload, idx";
  struct {
    SqliteStmt* stmt;
    const char* sql;
  } const statements[] = {
      {&get_workload_, "SELECT spec_json, generation, deleted_at FROM workloads WHERE name = ?1"},
      // A put over a Terminating row brings the workload back as new (created now).
      {&put_workload_,
       "INSERT INTO workloads (name, spec_json, spec_hash, generation, updated_at, created_at)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO UPDATE SET"
       " spec_json = excluded.spec_json, spec_hash = excluded.spec_hash,"
       " generation = excluded.generation, updated_at = excluded.updated_at,"
       " created_at = CASE WHEN deleted_at != 0 THEN excluded.created_at ELSE created_at END,"
       " deleted_at = 0"},
      {&delete_workload_,
       "UPDATE workloads SET deleted_at = ?2 WHERE name = ?1 AND deleted_at = 0"},
      {&purge_workload_, "DELETE FROM workloads WHERE name = ?1 AND deleted_at != 0"},
      {&load_workloads_,
       "SELECT name, spec_json, spec_hash, generation, updated_at, created_at, deleted_at"
       " FROM workloads ORDER BY name"},
      {&load_replicas_, load_replicas.c_str()},
      {&put_replica_, put_replica.c_str()},
      {&delete_replica_, "DELETE FROM replicas WHERE workload = ?1 AND idx = ?2"},
      {&put_event_,
       "INSERT INTO events (slot, seq, time, workload, replica, type, message)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (slot) DO UPDATE SET"
       " seq = excluded.seq, time = excluded.time, workload = excluded.workload,"
       " replica = excluded.replica, type = excluded.type, message = excluded.message"},
      {&load_events_,
       "SELECT seq, time, workload, replica, type, message FROM events"
       " WHERE seq > ?1 ORDER BY seq LIMIT ?2"},
  };
  for (const auto& s : statements) PETREL_RETURN_IF_ERROR(s.stmt->Prepare(&db_, s.sql));
  return Status::OK();
}

Status SqliteStore::TransactDurably(const std::function<Status()>& body, SqliteCommit when) {
  // synchronous can only change outside a transaction; in WAL mode FULL syncs the WAL
  // on every commit, NORMAL only at checkpoints.
  PETREL_RETURN_IF_ERROR(SqliteQuery(&sync_full_).Run());
  Status s = db_.Transact(body, when);
  Status restored = SqliteQuery(&sync_normal_).Run();
  return s.ok() ? restored : s;
}

Status SqliteStore::PutWorkloads(const std::vector<WorkloadRow>& rows,
                                 std::vector<PutOutcome>* outcomes,
                                 std::vector<int64_t>* generations) {
  std::vector<PutOutcome> new_outcomes;
  std::vector<int64_t> new_generations;
  Status s = TransactDurably([&]() -> Status {
    new_outcomes.clear();
    new_generations.clear();
    for (const WorkloadRow& row : rows) {
      bool exists = false;
      std::string stored_spec;
      int64_t generation = 0;
      bool terminating = false;
      {
        SqliteQuery q(&get_workload_);
        PETREL_RETURN_IF_ERROR(q.Bind(row.name).Next(&exists));
        if (exists) {
          stored_spec = q.Text(0);
          generation = q.Int64(1);
          terminating = q.Int64(2) != 0;
        }
      }
      if (exists && !terminating && stored_spec == row.spec_json) {
        new_outcomes.push_back(PutOutcome::kUnchanged);
        new_generations.push_back(generation);
        continue;
      }
      ++generation;
      PETREL_RETURN_IF_ERROR(SqliteQuery(&put_workload_)
                                 .Bind(row.name)
                                 .Bind(row.spec_json)
                                 .Bind(row.spec_hash)
                                 .Bind(generation)
                                 .Bind(row.updated_at)
                                 .Run()
                                 .WithContext("workload " + row.name));
      new_outcomes.push_back(exists && !terminating ? PutOutcome::kConfigured
                                                    : PutOutcome::kCreated);
      new_generations.push_back(generation);
    }
    return Status::OK();
  });
  if (!s.ok()) return s.WithContext("put workloads");
  if (outcomes != nullptr) *outcomes = std::move(new_outcomes);
  if (generations != nullptr) *generations = std::move(new_generations);
  return Status::OK();
}

Status SqliteStore::DeleteWorkload(const std::string& name, TimeMs now) {
  return TransactDurably([&]() -> Status {
           PETREL_RETURN_IF_ERROR(SqliteQuery(&delete_workload_).Bind(name).Bind(now).Run());
           if (sqlite3_changes64(db_.handle()) == 0) return Status::NotFound("not found");
           return Status::OK();
         })
      .WithContext("delete workload " + name);
}

Status SqliteStore::LoadWorkloads(std::vector<WorkloadRow>* rows) {
  rows->clear();
  SqliteQuery q(&load_workloads_);
  for (;;) {
    bool row = false;
    Status s = q.Next(&row);
    if (!s.ok()) return s.WithContext("load workloads");
    if (!row) return Status::OK();
    rows->push_back(WorkloadRow{q.Text(0), q.Text(1), q.Text(2), q.Int64(3), q.Int64(4), q.Int64(5),
                                q.Int64(6)});
  }
}

Status SqliteStore::LoadReplicas(std::vector<ReplicaStatus>* rows) {
  rows->clear();
  SqliteQuery q(&load_replicas_);
  for (;;) {
    bool row = false;
    Status s = q.Next(&row);
    if (!s.ok()) return s.WithContext("load replicas");
    if (!row) return Status::OK();
    ReplicaStatus r;
    r.workload = q.Text(0);
    r.index = q.Int(1);
    const std::string phase = q.Text(2);
    std::optional<Phase> parsed = ParsePhase(phase);
    if (!parsed) {
      return Status::Corruption("load replicas: database " + db_.path() + ": replica " +
                                r.workload + "/" + std::to_string(r.index) +
                                " has unknown phase '" + phase + "'");
    }
    r.phase = *parsed;
    r.container_id = q.Text(3);
    r.pid = q.Int(4);
    r.restarts = q.Int(5);
    r.last_exit_code = q.Int(6);
    r.message = q.Text(7);
    r.since = q.Int64(8);
    r.next_retry = q.Int64(9);
    r.failures = q.Int(10);
    r.spec_hash = q.Text(11);
    rows->push_back(std::move(r));
  }
}

Status SqliteStore::WriteObserved(const std::vector<ReplicaStatus>& upserts,
                                  const std::vector<std::pair<std::string, int>>& deletes,
                                  const std::vector<Event>& events,
                                  const std::vector<std::string>& purges) {
  if (upserts.empty() && deletes.empty() && events.empty() && purges.empty()) {
    return Status::OK();
  }
  int64_t last_seq = last_event_seq_;
  for (const Event& e : events) {
    if (e.seq <= last_seq) {
      return Status::InvalidArgument("write observed: event seq " + std::to_string(e.seq) +
                                     " does not follow " + std::to_string(last_seq));
    }
    last_seq = e.seq;
  }
  Status s = db_.Transact([&]() -> Status {
    for (const ReplicaStatus& r : upserts) {
      PETREL_RETURN_IF_ERROR(SqliteQuery(&put_replica_)
                                 .Bind(r.workload)
                                 .Bind(r.index)
                                 .Bind(PhaseName(r.phase))
                                 .Bind(r.container_id)
                                 .Bind(r.pid)
                                 .Bind(r.restarts)
                                 .Bind(r.last_exit_code)
                                 .Bind(r.message)
                                 .Bind(r.since)
                                 .Bind(r.next_retry)
                                 .Bind(r.failures)
                                 .Bind(r.spec_hash)
                                 .Run());
    }
    for (const auto& [workload, index] : deletes) {
      PETREL_RETURN_IF_ERROR(SqliteQuery(&delete_replica_).Bind(workload).Bind(index).Run());
    }
    for (const std::string& name : purges) {
      PETREL_RETURN_IF_ERROR(SqliteQuery(&purge_workload_).Bind(name).Run());
    }
    for (const Event& e : events) {
      PETREL_RETURN_IF_ERROR(SqliteQuery(&put_event_)
                                 .Bind(e.seq % capacity_)
                                 .Bind(e.seq)
                                 .Bind(e.time)
                                 .Bind(e.workload)
                                 .Bind(e.replica)
                                 .Bind(e.type)
                                 .Bind(e.message)
                                 .Run());
    }
    return Status::OK();
  });
  if (!s.ok()) return s.WithContext("write observed");
  last_event_seq_ = last_seq;
  return Status::OK();
}

Status SqliteStore::LoadEvents(int64_t after_seq, size_t limit, std::vector<Event>* events) {
  events->clear();
  const int64_t max_limit = std::numeric_limits<int64_t>::max();
  SqliteQuery q(&load_events_);
  q.Bind(after_seq).Bind(limit > static_cast<uint64_t>(max_limit) ? max_limit
                                                                  : static_cast<int64_t>(limit));
  for (;;) {
    bool row = false;
    Status s = q.Next(&row);
    if (!s.ok()) return s.WithContext("load events");
    if (!row) return Status::OK();
    events->push_back(Event{q.Int64(0), q.Int64(1), q.Text(2), q.Int(3), q.Text(4), q.Text(5)});
  }
}

}  // namespace

Status PrepareStateDir(const std::string& dir) {
  const std::string context = "state dir " + dir;
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoError(context, "not accessible", errno);
    PETREL_RETURN_IF_ERROR(MakeDurableDirs(dir, 0700).WithContext(context));
    if (stat(dir.c_str(), &st) != 0) return ErrnoError(context, "not accessible", errno);
  }
  if (!S_ISDIR(st.st_mode)) return Status::IOError(context + ": not a directory");
  if (faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) != 0) {
    return ErrnoError(context, "not writable", errno);
  }
  return Status::OK();
}

Status Store::Open(const StoreOptions& options, std::unique_ptr<Store>* result) {
  if (options.state_dir.empty()) return Status::InvalidArgument("state dir: empty path");
  if (options.event_log_capacity < 1) {
    return Status::InvalidArgument("event log capacity " +
                                   std::to_string(options.event_log_capacity) +
                                   ": must be at least 1");
  }
  PETREL_RETURN_IF_ERROR(PrepareStateDir(options.state_dir));
  std::string path = options.state_dir;
  if (path.back() != '/') path += '/';
  path += kDbFile;
  auto store = std::make_unique<SqliteStore>(options.event_log_capacity);
  PETREL_RETURN_IF_ERROR(store->Init(path));
  *result = std::move(store);
  return Status::OK();
}

}  // namespace petrel::internal
