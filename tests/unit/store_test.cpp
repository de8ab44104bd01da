#include "lib/store/store.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

using petrel::testing::TempDir;

std::unique_ptr<Store> OpenStore(const std::string& dir, int64_t capacity = 10000) {
  StoreOptions options;
  options.state_dir = dir;
  options.event_log_capacity = capacity;
  std::unique_ptr<Store> store;
  Status s = Store::Open(options, &store);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return store;
}

Status TryOpen(const std::string& dir, int64_t capacity = 10000) {
  StoreOptions options;
  options.state_dir = dir;
  options.event_log_capacity = capacity;
  std::unique_ptr<Store> store;
  return Store::Open(options, &store);
}

WorkloadRow Row(const std::string& name, const std::string& spec_json, TimeMs at = 1000) {
  return WorkloadRow{name, spec_json, "hash-of-" + spec_json, 0, at};
}

ReplicaStatus Replica(const std::string& workload, int index) {
  ReplicaStatus r;
  r.workload = workload;
  r.index = index;
  r.phase = Phase::kCrashLoop;
  r.container_id = "c-" + workload + "-" + std::to_string(index);
  r.pid = 4242;
  r.restarts = 3;
  r.last_exit_code = 137;
  r.message = "exited with 137 (killed)";
  r.since = 1'700'000'000'123;
  r.next_retry = 1'700'000'004'123;
  r.failures = 2;
  r.spec_hash = "sha256:abc";
  return r;
}

Event MakeEvent(int64_t seq) {
  return Event{seq,
               1'700'000'000'000 + seq,
               "w" + std::to_string(seq % 3),
               static_cast<int>(seq % 2),
               "Started",
               "event " + std::to_string(seq)};
}

// Runs one SQL query that returns one integer, on its own connection.
int64_t QueryInt(const std::string& db_path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

std::vector<int64_t> Seqs(const std::vector<Event>& events) {
  std::vector<int64_t> seqs;
  for (const Event& e : events) seqs.push_back(e.seq);
  return seqs;
}

// Runs `fn` in a forked child and returns what it returned. The child never returns
// into doctest: it writes the string to a pipe and _exits.
std::string RunInChild(const std::function<std::string()>& fn) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    std::string out = fn();
    const char* p = out.data();
    size_t left = out.size();
    while (left > 0) {
      ssize_t n = write(fds[1], p, left);
      if (n <= 0) _exit(2);
      p += n;
      left -= static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE_MESSAGE((WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0), "child failed: " << out);
  return out;
}

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_SUITE("store") {
  TEST_CASE("put reports created, unchanged and configured with generations") {
    TempDir dir;
    auto store = OpenStore(dir.path());
    std::vector<PutOutcome> outcomes;
    std::vector<int64_t> generations;

    REQUIRE(
        store->PutWorkloads({Row("a", "{\"v\":1}"), Row("b", "{\"v\":1}")}, &outcomes, &generations)
            .ok());
    CHECK(outcomes == std::vector<PutOutcome>{PutOutcome::kCreated, PutOutcome::kCreated});
    CHECK(generations == std::vector<int64_t>{1, 1});

    const int64_t before = store->TotalChanges();
    REQUIRE(store->PutWorkloads({Row("a", "{\"v\":1}", 2000)}, &outcomes, &generations).ok());
    CHECK(outcomes == std::vector<PutOutcome>{PutOutcome::kUnchanged});
    CHECK(generations == std::vector<int64_t>{1});
    CHECK(store->TotalChanges() == before);

    REQUIRE(store
                ->PutWorkloads({Row("a", "{\"v\":1}"), Row("b", "{\"v\":2}", 3000)}, &outcomes,
                               &generations)
                .ok());
    CHECK(outcomes == std::vector<PutOutcome>{PutOutcome::kUnchanged, PutOutcome::kConfigured});
    CHECK(generations == std::vector<int64_t>{1, 2});
    REQUIRE(store->PutWorkloads({Row("b", "{\"v\":3}", 4000)}, &outcomes, &generations).ok());
    CHECK(generations == std::vector<int64_t>{3});

    // Survives a reopen, every column as written.
    store.reset();
    store = OpenStore(dir.path());
    std::vector<WorkloadRow> rows;
    REQUIRE(store->LoadWorkloads(&rows).ok());
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].name == "a");
    CHECK(rows[0].spec_json == "{\"v\":1}");
    CHECK(rows[0].spec_hash == "hash-of-{\"v\":1}");
    CHECK(rows[0].generation == 1);
    CHECK(rows[0].updated_at == 1000);
    CHECK(rows[1].name == "b");
    CHECK(rows[1].spec_json == "{\"v\":3}");
    CHECK(rows[1].generation == 3);
    CHECK(rows[1].updated_at == 4000);

    // Null outputs are allowed; an empty batch writes nothing.
    REQUIRE(store->PutWorkloads({Row("c", "{}")}, nullptr, nullptr).ok());
    const int64_t after = store->TotalChanges();
    REQUIRE(store->PutWorkloads({}, &outcomes, &generations).ok());
    CHECK(outcomes.empty());
    CHECK(store->TotalChanges() == after);
  }

  TEST_CASE("delete marks the workload Terminating, a purge removes it and its replicas") {
    TempDir dir;
    auto store = OpenStore(dir.path());
    REQUIRE(store->PutWorkloads({Row("a", "{}"), Row("b", "{}")}, nullptr, nullptr).ok());
    REQUIRE(store->WriteObserved({Replica("a", 0), Replica("a", 1), Replica("b", 0)}, {}, {}).ok());

    REQUIRE(store->DeleteWorkload("a", 7000).ok());
    std::vector<WorkloadRow> rows;
    REQUIRE(store->LoadWorkloads(&rows).ok());
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].name == "a");
    CHECK(rows[0].deleted_at == 7000);
    CHECK(rows[1].deleted_at == 0);
    std::vector<ReplicaStatus> replicas;
    REQUIRE(store->LoadReplicas(&replicas).ok());
    CHECK(replicas.size() == 3);  // kept until the containers are gone

    // Deleting again, or deleting what never was, changes nothing.
    const int64_t before = store->TotalChanges();
    Status s = store->DeleteWorkload("a", 8000);
    CHECK(s.IsNotFound());
    CHECK(s.message() == "delete workload a: not found");
    CHECK(store->DeleteWorkload("zzz", 8000).IsNotFound());
    CHECK(store->TotalChanges() == before);

    // A purge of a workload that is not Terminating is ignored.
    REQUIRE(store->WriteObserved({}, {}, {}, {"a", "b"}).ok());
    REQUIRE(store->LoadReplicas(&replicas).ok());
    REQUIRE(replicas.size() == 1);
    CHECK(replicas[0].workload == "b");
    REQUIRE(store->LoadWorkloads(&rows).ok());
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].name == "b");

    // A re-created workload starts again at generation 1 and with no replicas.
    std::vector<int64_t> generations;
    REQUIRE(store->PutWorkloads({Row("a", "{}")}, nullptr, &generations).ok());
    CHECK(generations == std::vector<int64_t>{1});
    REQUIRE(store->LoadReplicas(&replicas).ok());
    CHECK(replicas.size() == 1);
  }

  TEST_CASE("a put over a Terminating workload brings it back as created") {
    TempDir dir;
    auto store = OpenStore(dir.path());
    WorkloadRow a = Row("a", "{}");
    a.updated_at = 1000;
    REQUIRE(store->PutWorkloads({a}, nullptr, nullptr).ok());
    REQUIRE(store->DeleteWorkload("a", 2000).ok());
    a.updated_at = 3000;  // the same spec: still a change, the workload comes back
    std::vector<PutOutcome> outcomes;
    std::vector<int64_t> generations;
    REQUIRE(store->PutWorkloads({a}, &outcomes, &generations).ok());
    CHECK(outcomes == std::vector<PutOutcome>{PutOutcome::kCreated});
    CHECK(generations == std::vector<int64_t>{2});
    std::vector<WorkloadRow> rows;
    REQUIRE(store->LoadWorkloads(&rows).ok());
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].deleted_at == 0);
    CHECK(rows[0].created_at == 3000);
    // And a purge now leaves it alone.
    REQUIRE(store->WriteObserved({}, {}, {}, {"a"}).ok());
    REQUIRE(store->LoadWorkloads(&rows).ok());
    CHECK(rows.size() == 1);
  }

  TEST_CASE("replica rows round-trip every field, change in place and delete") {
    TempDir dir;
    auto store = OpenStore(dir.path());
    REQUIRE(store->PutWorkloads({Row("a", "{}")}, nullptr, nullptr).ok());

    ReplicaStatus r0 = Replica("a", 0);
    ReplicaStatus r1 = Replica("a", 1);
    r1.phase = Phase::kRunning;
    r1.last_exit_code = -1;
    r1.next_retry = 0;
    REQUIRE(store->WriteObserved({r0, r1, Replica("ghost", 0)}, {}, {}).ok());
    store.reset();
    store = OpenStore(dir.path());
    std::vector<ReplicaStatus> loaded;
    REQUIRE(store->LoadReplicas(&loaded).ok());
    REQUIRE(loaded.size() == 2);  // the ghost's row was skipped
    CHECK(loaded[0] == r0);
    CHECK(loaded[1] == r1);

    // The same rows again change nothing.
    const int64_t before = store->TotalChanges();
    REQUIRE(store->WriteObserved({r0, r1}, {}, {}).ok());
    CHECK(store->TotalChanges() == before);

    // Every phase, and every other field changed, comes back as written.
    for (Phase phase : {Phase::kPending, Phase::kCreating, Phase::kRunning, Phase::kExited,
                        Phase::kCrashLoop, Phase::kStopping}) {
      r0.phase = phase;
      r0.container_id += "x";
      r0.pid += 1;
      r0.restarts += 1;
      r0.last_exit_code += 1;
      r0.message += " again";
      r0.since += 1;
      r0.next_retry += 1;
      r0.failures += 1;
      r0.spec_hash += "1";
      REQUIRE(store->WriteObserved({r0}, {}, {}).ok());
      REQUIRE(store->LoadReplicas(&loaded).ok());
      REQUIRE(loaded.size() == 2);
      CHECK(loaded[0] == r0);
    }

    REQUIRE(store->WriteObserved({}, {{"a", 0}, {"a", 7}}, {}).ok());
    REQUIRE(store->LoadReplicas(&loaded).ok());
    REQUIRE(loaded.size() == 1);
    CHECK(loaded[0] == r1);
  }

  TEST_CASE("the event log is a ring of event_log_capacity slots") {
    TempDir dir;
    auto store = OpenStore(dir.path(), 5);
    CHECK(store->LastEventSeq() == 0);
    for (int64_t seq = 1; seq <= 12; seq += 3) {
      REQUIRE(store->WriteObserved({}, {}, {MakeEvent(seq), MakeEvent(seq + 1), MakeEvent(seq + 2)})
                  .ok());
    }
    CHECK(store->LastEventSeq() == 12);
    CHECK(QueryInt(dir.path() + "/petrel.db", "SELECT count(*) FROM events") == 5);

    std::vector<Event> events;
    REQUIRE(store->LoadEvents(0, 100, &events).ok());
    CHECK(Seqs(events) == std::vector<int64_t>{8, 9, 10, 11, 12});
    const Event want = MakeEvent(10);
    CHECK(events[2].time == want.time);
    CHECK(events[2].workload == want.workload);
    CHECK(events[2].replica == want.replica);
    CHECK(events[2].type == want.type);
    CHECK(events[2].message == want.message);

    REQUIRE(store->LoadEvents(9, 2, &events).ok());
    CHECK(Seqs(events) == std::vector<int64_t>{10, 11});
    REQUIRE(store->LoadEvents(12, 10, &events).ok());
    CHECK(events.empty());
    REQUIRE(store->LoadEvents(0, 0, &events).ok());
    CHECK(events.empty());

    // Seqs must keep increasing; a bad batch writes nothing.
    const int64_t before = store->TotalChanges();
    Status s = store->WriteObserved({}, {}, {MakeEvent(13), MakeEvent(13)});
    CHECK(s.IsInvalidArgument());
    CHECK(store->TotalChanges() == before);
    CHECK(store->LastEventSeq() == 12);
  }

  TEST_CASE("LastEventSeq survives a reopen") {
    TempDir dir;
    {
      auto store = OpenStore(dir.path());
      REQUIRE(store->WriteObserved({}, {}, {MakeEvent(1), MakeEvent(2), MakeEvent(3)}).ok());
    }
    auto store = OpenStore(dir.path());
    CHECK(store->LastEventSeq() == 3);
    REQUIRE(store->WriteObserved({}, {}, {MakeEvent(4)}).ok());
    CHECK(store->LastEventSeq() == 4);
  }

  TEST_CASE("a changed capacity keeps the newest events that fit") {
    TempDir dir;
    const std::string db = dir.path() + "/petrel.db";
    {
      auto store = OpenStore(dir.path(), 10);
      std::vector<Event> events;
      for (int64_t seq = 1; seq <= 8; ++seq) events.push_back(MakeEvent(seq));
      REQUIRE(store->WriteObserved({}, {}, events).ok());
    }
    std::vector<Event> events;
    {
      auto store = OpenStore(dir.path(), 5);
      REQUIRE(store->LoadEvents(0, 100, &events).ok());
      CHECK(Seqs(events) == std::vector<int64_t>{4, 5, 6, 7, 8});
      CHECK(QueryInt(db, "SELECT count(*) FROM events WHERE slot != seq % 5") == 0);
      REQUIRE(store->WriteObserved({}, {}, {MakeEvent(9), MakeEvent(10)}).ok());
      REQUIRE(store->LoadEvents(0, 100, &events).ok());
      CHECK(Seqs(events) == std::vector<int64_t>{6, 7, 8, 9, 10});
    }
    {
      auto store = OpenStore(dir.path(), 20);
      CHECK(store->LastEventSeq() == 10);
      CHECK(QueryInt(db, "SELECT count(*) FROM events WHERE slot != seq % 20") == 0);
      REQUIRE(store->WriteObserved({}, {}, {MakeEvent(11)}).ok());
      REQUIRE(store->LoadEvents(0, 100, &events).ok());
      CHECK(Seqs(events) == std::vector<int64_t>{6, 7, 8, 9, 10, 11});
    }
    // Reopening with the capacity the ring already has writes nothing.
    auto store = OpenStore(dir.path(), 20);
    CHECK(store->TotalChanges() == 0);
    CHECK(TryOpen(dir.path(), 0).IsInvalidArgument());
  }

  TEST_CASE("an idle store writes nothing") {
    TempDir dir;
    auto store = OpenStore(dir.path());
    REQUIRE(store->PutWorkloads({Row("a", "{}")}, nullptr, nullptr).ok());
    REQUIRE(store->WriteObserved({Replica("a", 0)}, {}, {MakeEvent(1)}).ok());
    const std::string wal = dir.path() + "/petrel.db-wal";
    const auto wal_size = std::filesystem::file_size(wal);
    const int64_t before = store->TotalChanges();
    for (int i = 0; i < 10; ++i) {
      REQUIRE(store->PutWorkloads({Row("a", "{}")}, nullptr, nullptr).ok());
      REQUIRE(store->WriteObserved({}, {}, {}).ok());
      REQUIRE(store->WriteObserved({Replica("a", 0)}, {{"a", 5}}, {}).ok());
    }
    CHECK(store->TotalChanges() == before);
    CHECK(std::filesystem::file_size(wal) == wal_size);
  }

  TEST_CASE("a database from a newer petrel is refused and left alone") {
    TempDir dir;
    const std::string db = dir.path() + "/petrel.db";
    {
      sqlite3* raw = nullptr;
      REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
      REQUIRE(sqlite3_exec(raw, "CREATE TABLE future (x); PRAGMA user_version=7", nullptr, nullptr,
                           nullptr) == SQLITE_OK);
      sqlite3_close(raw);
    }
    Status s = TryOpen(dir.path());
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() ==
          "database " + db + " has schema version 7, newer than this petrel's 3; upgrade petrel");
    CHECK(QueryInt(db, "PRAGMA user_version") == 7);
    CHECK(QueryInt(db, "SELECT count(*) FROM sqlite_master") == 1);
  }

  TEST_CASE("a version 1 database is migrated: created_at starts as updated_at") {
    TempDir dir;
    const std::string db = dir.path() + "/petrel.db";
    {
      sqlite3* raw = nullptr;
      REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
      const char* v1 =
          "CREATE TABLE workloads (name TEXT PRIMARY KEY NOT NULL, spec_json TEXT NOT NULL,"
          " spec_hash TEXT NOT NULL, generation INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
          "CREATE TABLE replicas (workload TEXT NOT NULL REFERENCES workloads(name) ON DELETE"
          " CASCADE, idx INTEGER NOT NULL, phase TEXT NOT NULL, container_id TEXT NOT NULL,"
          " pid INTEGER NOT NULL, restarts INTEGER NOT NULL, last_exit_code INTEGER NOT NULL,"
          " message TEXT NOT NULL, since INTEGER NOT NULL, next_retry INTEGER NOT NULL,"
          " failures INTEGER NOT NULL, spec_hash TEXT NOT NULL, PRIMARY KEY (workload, idx))"
          " WITHOUT ROWID;"
          "CREATE TABLE events (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,"
          " time INTEGER NOT NULL, workload TEXT NOT NULL, replica INTEGER NOT NULL,"
          " type TEXT NOT NULL, message TEXT NOT NULL);"
          "INSERT INTO workloads VALUES ('old', '{}', 'h', 3, 5000);"
          "PRAGMA user_version=1;";
      REQUIRE(sqlite3_exec(raw, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(raw);
    }
    auto store = OpenStore(dir.path());
    std::vector<WorkloadRow> rows;
    REQUIRE(store->LoadWorkloads(&rows).ok());
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].generation == 3);
    CHECK(rows[0].created_at == 5000);
    // A later put changes updated_at and keeps created_at.
    REQUIRE(store->PutWorkloads({Row("old", "{\"x\":1}", 9000)}, nullptr, nullptr).ok());
    REQUIRE(store->LoadWorkloads(&rows).ok());
    CHECK(rows[0].updated_at == 9000);
    CHECK(rows[0].created_at == 5000);
    CHECK(rows[0].deleted_at == 0);
    CHECK(QueryInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
  }

  TEST_CASE("a file that is not a database is refused") {
    TempDir dir;
    const std::string db = dir.path() + "/petrel.db";
    {
      std::ofstream out(db, std::ios::binary);
      for (int i = 0; i < 1024; ++i) out << "garbage!";
    }
    Status s = TryOpen(dir.path());
    CHECK(s.code() == Status::Code::kCorruption);
    INFO(s.ToString());
    CHECK(Has(s.message(), "database " + db + ": "));
    CHECK(std::filesystem::file_size(db) == 8192);  // not reset
  }

  TEST_CASE("the state dir is created with mode 0700, parents too") {
    TempDir dir;
    const std::string state = dir.path() + "/var/lib/petrel";
    auto store = OpenStore(state + "/");
    for (const std::string& d : {dir.path() + "/var", dir.path() + "/var/lib", state}) {
      struct stat st;
      REQUIRE(stat(d.c_str(), &st) == 0);
      CHECK((st.st_mode & 07777) == 0700);
    }
    CHECK(std::filesystem::exists(state + "/petrel.db"));

    const std::string file = dir.path() + "/file";
    std::ofstream(file) << "x";
    Status s = TryOpen(file);
    CHECK(s.message() == "state dir " + file + ": not a directory");
  }

  TEST_CASE("two stores on one database see each other's writes") {
    TempDir dir;
    auto first = OpenStore(dir.path());
    auto second = OpenStore(dir.path());
    REQUIRE(first->PutWorkloads({Row("a", "{}")}, nullptr, nullptr).ok());
    std::vector<WorkloadRow> rows;
    REQUIRE(second->LoadWorkloads(&rows).ok());
    CHECK(rows.size() == 1);
  }

  TEST_CASE("an unwritable state dir is a clear error") {
    TempDir dir;
    const std::string sub = dir.path() + "/state";
    std::string report;
    if (geteuid() == 0) {
      // chmod does not stop root: a child drops to nobody (65534) and tries there.
      REQUIRE(chmod(dir.path().c_str(), 0700) == 0);
      report = RunInChild([&]() -> std::string {
        if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0) {
          return std::string("cannot drop privileges: ") + std::strerror(errno);
        }
        return TryOpen(dir.path()).ToString() + "\n" + TryOpen(sub).ToString();
      });
    } else {
      REQUIRE(chmod(dir.path().c_str(), 0500) == 0);
      report = TryOpen(dir.path()).ToString() + "\n" + TryOpen(sub).ToString();
      REQUIRE(chmod(dir.path().c_str(), 0700) == 0);
    }
    CHECK(report == "I/O error: state dir " + dir.path() + ": not writable: Permission denied\n" +
                        "I/O error: state dir " + sub + ": " +
                        (geteuid() == 0 ? "not accessible" : sub + ": mkdir") +
                        ": Permission denied");
    CHECK(!std::filesystem::exists(dir.path() + "/petrel.db"));
  }

  TEST_CASE("a full disk fails writes cleanly and the store recovers") {
    REQUIRE_MESSAGE(geteuid() == 0,
                    "this test mounts a small tmpfs and must run as root (it does in CI)");
    TempDir dir;
    const std::string report = RunInChild([&]() -> std::string {
      if (unshare(CLONE_NEWNS) != 0) return std::string("unshare: ") + std::strerror(errno);
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        return std::string("make mounts private: ") + std::strerror(errno);
      }
      if (mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=512k,mode=0700") != 0) {
        return std::string("mount tmpfs: ") + std::strerror(errno);
      }
      const std::string state = dir.path() + "/state";
      StoreOptions options;
      options.state_dir = state;
      std::unique_ptr<Store> store;
      Status s = Store::Open(options, &store);
      if (!s.ok()) return "open: " + s.ToString();
      s = store->PutWorkloads({Row("small", "{\"v\":1}")}, nullptr, nullptr);
      if (!s.ok()) return "put small: " + s.ToString();
      s = store->WriteObserved({Replica("small", 0)}, {}, {MakeEvent(1)});
      if (!s.ok()) return "write observed: " + s.ToString();

      const std::string filler = dir.path() + "/filler";
      int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0) return "create filler: " + std::string(std::strerror(errno));
      std::string chunk(4096, 'f');
      while (write(fd, chunk.data(), chunk.size()) > 0) {
      }
      int err = errno;
      close(fd);
      if (err != ENOSPC) return "fill: " + std::string(std::strerror(err));

      std::string out;
      const std::string big(64 * 1024, 'x');
      s = store->PutWorkloads({Row("small", "{\"v\":2}"), Row("big", big)}, nullptr, nullptr);
      out += "put big: " + s.ToString() + "\n";
      Event big_event = MakeEvent(2);
      big_event.message = big;
      s = store->WriteObserved({}, {}, {big_event});
      out += "write observed: " + s.ToString() + "\n";
      out += "open another: " + TryOpen(dir.path() + "/state2").ToString() + "\n";

      std::vector<WorkloadRow> rows;
      s = store->LoadWorkloads(&rows);
      out += "load: " + s.ToString();
      for (const WorkloadRow& r : rows) out += " " + r.name + "=" + r.spec_json;
      out += "\nlast seq: " + std::to_string(store->LastEventSeq()) + "\n";

      unlink(filler.c_str());
      out += "open another after: " + TryOpen(dir.path() + "/state2").ToString() + "\n";
      std::vector<PutOutcome> outcomes;
      s = store->PutWorkloads({Row("small", "{\"v\":2}"), Row("big", big)}, &outcomes, nullptr);
      out += "put after: " + s.ToString() + "\n";
      s = store->WriteObserved({}, {}, {big_event});
      out += "write observed after: " + s.ToString() + "\n";
      store.reset();
      s = Store::Open(options, &store);
      out += "reopen: " + s.ToString() + "\n";
      if (s.ok()) {
        s = store->LoadWorkloads(&rows);
        out += "load after: " + s.ToString();
        for (const WorkloadRow& r : rows) {
          out += " " + r.name + "=" +
                 (r.name == "big" ? std::to_string(r.spec_json.size()) : r.spec_json);
        }
        out += "\nlast seq after: " + std::to_string(store->LastEventSeq()) + "\n";
      }
      return out;
    });
    INFO(report);
    const std::string db = dir.path() + "/state/petrel.db";
    CHECK(Has(report, "put big: unavailable: put workloads: database " + db + ": disk full\n"));
    CHECK(Has(report,
              "write observed: unavailable: write observed: database " + db + ": disk full\n"));
    CHECK(Has(report, "open another: unavailable: "));
    CHECK(Has(report, "state2/petrel.db: disk full\n"));
    CHECK(Has(report, "load: OK small={\"v\":1}\nlast seq: 1\n"));
    CHECK(Has(report,
              "open another after: OK\nput after: OK\n"
              "write observed after: OK\nreopen: OK\n"));
    CHECK(Has(report, "load after: OK big=65536 small={\"v\":2}\nlast seq after: 2\n"));
  }
}

}  // namespace
}  // namespace petrel::internal
