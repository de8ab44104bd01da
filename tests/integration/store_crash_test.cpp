// store_crash_test: SIGKILLs a process that applies workloads and runs reconcile passes
// (Orchestrator::Apply and Step, fake runtime), at random moments, 60 times over one
// state dir. After every kill the database must pass PRAGMA integrity_check, every
// Apply the writer was told succeeded must still be there (with a spec at least as
// new), and Orchestrator::Open must succeed and show it.
//
// Usage: store_crash_test [seed]. The seed is printed; passing it back replays the
// kill delays (not the exact interleaving, which depends on the scheduler).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "petrel/orchestrator.h"
#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"

namespace petrel::internal {
namespace {

constexpr int kKills = 60;
constexpr int kMaxDelayMs = 200;
constexpr int kSharedNames = 40;        // w0..w39, updated by every writer
constexpr int64_t kEventCapacity = 64;  // small, so the ring wraps many times
constexpr int64_t kCounterStride = 1'000'000;

// Every applied spec carries a counter in its env (COUNTER) that grows over the whole
// run: writer k counts from k * kCounterStride, so a newer Apply of a name always has a
// larger counter.
WorkloadSpec MakeSpec(const std::string& name, int64_t counter, size_t pad) {
  WorkloadSpec s;
  s.name = name;
  s.image = "oci-archive:/opt/images/busybox.tar";
  s.command = {"/bin/sh", "-c", "sleep 3600"};
  s.env = {{"COUNTER", std::to_string(counter)}, {"PAD", std::string(pad, 'p')}};
  s.replicas = 1 + static_cast<int>(counter % 3);
  return s;
}

// The counter of a stored spec JSON, -1 when unreadable.
int64_t SpecCounter(const std::string& spec_json) {
  Result<WorkloadSpec> spec = SpecFromJson(spec_json);
  if (!spec.ok() || !spec->env.count("COUNTER")) return -1;
  return std::strtoll(spec->env.at("COUNTER").c_str(), nullptr, 10);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "store_crash_test: writer: %s\n", what.c_str());
  _exit(3);
}

Options WriterOptions(const std::string& dir, std::shared_ptr<testing::FakeClock> clock) {
  Options o;
  o.state_dir = dir;
  o.runtime = std::make_shared<testing::FakeRuntime>(clock);
  o.clock = std::move(clock);
  o.node_name = "crash";
  o.event_log_capacity = kEventCapacity;
  o.log_sink = [](LogLevel, std::string_view) {};
  return o;
}

// The writer (a child process): applies workloads through Orchestrator::Apply and runs
// reconcile passes (replica status and events) until killed. After each Apply returns OK
// it writes one "<name> <counter>\n" line per spec to `ack_fd`, in a single write()
// (atomic on a pipe), so the parent never sees a torn ack.
[[noreturn]] void WriteUntilKilled(const std::string& dir, int writer, uint64_t seed, int ack_fd) {
  std::mt19937_64 rng(seed);
  auto clock = std::make_shared<testing::FakeClock>();
  Options options = WriterOptions(dir, clock);
  auto runtime = std::static_pointer_cast<testing::FakeRuntime>(options.runtime);
  std::unique_ptr<Orchestrator> orch;
  Status s = Orchestrator::Open(options, &orch);
  if (!s.ok()) Die("open: " + s.ToString());

  int64_t counter = writer * kCounterStride;
  for (int64_t round = 0;; ++round) {
    std::vector<WorkloadSpec> specs;
    const size_t batch = 1 + rng() % 3;
    for (size_t i = 0; i < batch; ++i) {
      // Mostly updates of shared names; now and then a name no one wrote before.
      std::string name = rng() % 5 == 0 ? "n" + std::to_string(writer) + "-" + std::to_string(round)
                                        : "w" + std::to_string(rng() % kSharedNames);
      bool dup = false;
      for (const WorkloadSpec& other : specs) dup |= other.name == name;
      if (!dup) specs.push_back(MakeSpec(name, ++counter, rng() % 2000));
    }
    Result<std::vector<ApplyResult>> applied = orch->Apply(specs);
    if (!applied.ok()) Die("apply: " + applied.status().ToString());
    std::string acks;
    for (const WorkloadSpec& spec : specs) {
      acks += spec.name + " " + spec.env.at("COUNTER") + "\n";
    }
    if (write(ack_fd, acks.data(), acks.size()) != static_cast<ssize_t>(acks.size())) {
      Die(std::string("ack: ") + std::strerror(errno));
    }
    // Replica status and events: containers start, some crash, back-offs pass.
    std::vector<ContainerInfo> running = runtime->Containers();
    if (!running.empty() && rng() % 2 == 0) {
      (void)runtime->Exit(running[rng() % running.size()].id, 1);
    }
    clock->Advance(static_cast<int64_t>(rng() % 3000));
    s = orch->Step();
    if (!s.ok()) Die("step: " + s.ToString());
  }
}

// Reads what is available on `fd` into `buffer` until `deadline`, or until EOF when
// `deadline` is null. Keeps the pipe from filling up and blocking the writer.
void ReadAcks(int fd, std::string* buffer, const std::chrono::steady_clock::time_point* deadline) {
  char chunk[65536];
  for (;;) {
    int timeout_ms = -1;
    if (deadline != nullptr) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout_ms = static_cast<int>(left.count()) + 1;
    }
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EOF: the writer is gone
    buffer->append(chunk, static_cast<size_t>(n));
  }
}

// Checks the file with plain SQLite, before petrel opens it. Returns "" when all is well.
std::string CheckRaw(const std::string& path, const std::map<std::string, int64_t>& acked) {
  if (!std::filesystem::exists(path)) {
    // Killed before the database was created.
    return acked.empty() ? "" : path + " is missing";
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string err = sqlite3_errmsg(db);
    sqlite3_close(db);
    return "open " + path + ": " + err;
  }
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> close_db(db, sqlite3_close);
  auto query_text = [db](const char* sql, std::string* out) -> std::string {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      return std::string(sql) + ": " + sqlite3_errmsg(db);
    }
    int rc = sqlite3_step(stmt);
    out->clear();
    if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      *out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    std::string err = rc == SQLITE_ROW || rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
    return err.empty() ? "" : std::string(sql) + ": " + err;
  };

  std::string value;
  std::string err = query_text("PRAGMA integrity_check", &value);
  if (!err.empty()) return err;
  if (value != "ok") return "integrity_check: " + value;
  err = query_text("PRAGMA user_version", &value);
  if (!err.empty()) return err;
  if (value == "0") {
    // Killed before the first migration committed: there is no schema yet.
    return acked.empty() ? "" : "schema missing after acknowledged puts";
  }
  err = query_text("SELECT count(*) FROM pragma_foreign_key_check", &value);
  if (!err.empty()) return err;
  if (value != "0") return "foreign_key_check: " + value + " orphan rows";
  err =
      query_text(("SELECT count(*) FROM events WHERE slot != seq % " +
                  std::to_string(kEventCapacity) + " OR slot >= " + std::to_string(kEventCapacity))
                     .c_str(),
                 &value);
  if (!err.empty()) return err;
  if (value != "0") return "event ring: " + value + " events out of their slot";

  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT spec_json FROM workloads WHERE name = ?1", -1, &stmt,
                         nullptr) != SQLITE_OK) {
    return std::string("prepare: ") + sqlite3_errmsg(db);
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> finalize(stmt, sqlite3_finalize);
  for (const auto& [name, counter] : acked) {
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) return "acknowledged workload " + name + " is missing";
    const int64_t stored = SpecCounter(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    if (stored < counter) {
      return "workload " + name + ": stored counter " + std::to_string(stored) +
             " older than acknowledged " + std::to_string(counter);
    }
  }
  return "";
}

// Checks the database as the killed writer left it, then opens it as petrel. Returns ""
// when all is well.
std::string Verify(const std::string& dir, const std::map<std::string, int64_t>& acked) {
  const std::string path = dir + "/petrel.db";
  std::string problem = CheckRaw(path, acked);
  if (!problem.empty()) return problem;

  auto clock = std::make_shared<testing::FakeClock>();
  std::unique_ptr<Orchestrator> orch;
  Status s = Orchestrator::Open(WriterOptions(dir, clock), &orch);
  if (!s.ok()) return "Orchestrator::Open: " + s.ToString();
  for (const auto& [name, counter] : acked) {
    Result<WorkloadState> w = orch->Get(name);
    if (!w.ok()) return "Get " + name + ": " + w.status().ToString();
    int64_t stored = std::strtoll(w->spec.env.at("COUNTER").c_str(), nullptr, 10);
    if (stored < counter) return "Get " + name + ": counter " + std::to_string(stored) + " < acked";
  }
  if (!orch->Events(0, 1000).ok()) return "Events: unreadable";
  return "";
}

int Main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : std::random_device()();
  std::printf("store_crash_test: seed %" PRIu64 "\n", seed);
  std::fflush(stdout);
  std::mt19937_64 rng(seed);

  char tmpl[] = "/tmp/petrel-store-crash-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "store_crash_test: mkdtemp: %s\n", std::strerror(errno));
    return 1;
  }
  const std::string dir = std::string(tmpl) + "/state";
  const auto start = std::chrono::steady_clock::now();

  std::map<std::string, int64_t> acked;  // name -> newest acknowledged counter
  int64_t ack_count = 0;
  for (int kill_no = 1; kill_no <= kKills; ++kill_no) {
    const int delay_ms = static_cast<int>(rng() % (kMaxDelayMs + 1));
    const uint64_t writer_seed = rng();
    int fds[2];
    if (pipe(fds) != 0) {
      std::fprintf(stderr, "store_crash_test: pipe: %s\n", std::strerror(errno));
      return 1;
    }
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
      std::fprintf(stderr, "store_crash_test: fork: %s\n", std::strerror(errno));
      return 1;
    }
    if (pid == 0) {
      close(fds[0]);
      WriteUntilKilled(dir, kill_no, writer_seed, fds[1]);
    }
    close(fds[1]);
    std::string acks;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    ReadAcks(fds[0], &acks, &deadline);
    kill(pid, SIGKILL);
    ReadAcks(fds[0], &acks, nullptr);
    close(fds[0]);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (!WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGKILL) {
      std::fprintf(stderr, "store_crash_test: FAIL: writer %d ended on its own (status %d)\n",
                   kill_no, wstatus);
      return 1;
    }

    size_t line_start = 0;
    for (size_t nl; (nl = acks.find('\n', line_start)) != std::string::npos; line_start = nl + 1) {
      const std::string line = acks.substr(line_start, nl - line_start);
      const size_t space = line.find(' ');
      const std::string name = line.substr(0, space);
      const int64_t counter = std::strtoll(line.c_str() + space + 1, nullptr, 10);
      int64_t& newest = acked[name];
      if (counter > newest) newest = counter;
      ++ack_count;
    }

    const std::string problem = Verify(dir, acked);
    if (!problem.empty()) {
      std::fprintf(stderr,
                   "store_crash_test: FAIL after kill %d (delay %d ms, seed %" PRIu64
                   "): %s\nstate kept in %s\n",
                   kill_no, delay_ms, seed, problem.c_str(), dir.c_str());
      return 1;
    }
  }

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  std::printf("store_crash_test: %d kills, %" PRId64
              " acknowledged applies (%zu workloads), all present, integrity ok (seed %" PRIu64
              ", %.1f s)\n",
              kKills, ack_count, acked.size(), seed, seconds);
  return 0;
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) { return petrel::internal::Main(argc, argv); }
