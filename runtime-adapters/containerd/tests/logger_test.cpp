// The log files shared by the crun shim and the containerd logger (lib/util/log_files.h),
// the logger's URI and arguments, and the logger process run as containerd 1.6's runc
// shim runs a `binary://` logger (runtime-adapters/containerd/logger.h): fds 3, 4, 5,
// argument pairs in any order, an environment of two variables. Needs no containerd.
// PETREL_CONTAINERD_LOGGER names the binary (logger_main.cpp).
#include "runtime-adapters/containerd/logger.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/log_files.h"
#include "lib/util/strings.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"
#include "tests/lib/wait.h"

namespace petrel::internal {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFile;

// The names of the log files in `dir`, oldest first.
std::vector<std::string> LogNames(const std::string& dir) {
  std::vector<std::string> names;
  const auto files = ListLogFiles(dir);
  REQUIRE(files.ok());
  for (const auto& [base, size] : *files) names.push_back(LogFileName(base));
  return names;
}

std::string ReadAll(const std::string& dir, int64_t since = 0) {
  LogOptions o;
  o.since_offset = since;
  o.limit_bytes = 1 << 20;
  return ReadLogFiles(dir, o)->data;
}

TEST_CASE("log files: a writer rotates at the cap and keeps two files named by offset") {
  TempDir tmp;
  LogPaths paths = MakeLogPaths(tmp.path());
  LogWriter w{paths.a.data(), paths.b.data(), paths.digits_at, 10};
  w.Open();
  w.Write("0123456", 7);
  w.Write("789abcdefghij", 13);  // split: 3 bytes fill log.0, 10 fill log.10
  CHECK(LogNames(tmp.path()) ==
        std::vector<std::string>{"log.00000000000000000010", "log.00000000000000000020"});
  w.Write("klm", 3);  // log.0 is gone: two files kept
  w.Close();
  CHECK(LogNames(tmp.path()) ==
        std::vector<std::string>{"log.00000000000000000010", "log.00000000000000000020"});
  CHECK(ReadFile(tmp.Sub("log.00000000000000000010")) == "abcdefghij");
  CHECK(ReadFile(tmp.Sub("log.00000000000000000020")) == "klm");

  // The reader: offsets into the whole output, clamped to what is kept.
  Result<LogChunk> all = ReadLogFiles(tmp.path(), LogOptions{0, 100});
  REQUIRE(all.ok());
  CHECK(all->data == "abcdefghijklm");
  CHECK(all->start_offset == 10);
  CHECK(all->end_offset == 23);
  Result<LogChunk> mid = ReadLogFiles(tmp.path(), LogOptions{18, 4});
  CHECK(mid->data == "ijkl");
  CHECK(mid->start_offset == 18);
  CHECK(mid->end_offset == 22);
  Result<LogChunk> tail = ReadLogFiles(tmp.path(), LogOptions{-1, 5});
  CHECK(tail->data == "ijklm");  // the last limit_bytes, across the two files
  CHECK(tail->start_offset == 18);
}

TEST_CASE("log files: the reader answers an empty chunk without files and NotFound without dir") {
  TempDir tmp;
  Result<LogChunk> none = ReadLogFiles(tmp.path(), LogOptions{});
  REQUIRE(none.ok());
  CHECK(none->data.empty());
  CHECK(none->end_offset == 0);
  CHECK(ReadLogFiles(tmp.Sub("gone"), LogOptions{}).status().IsNotFound());
}

TEST_CASE("log files: a resumed writer continues the newest file and its offsets") {
  TempDir tmp;
  WriteFile(tmp.Sub("log.00000000000000000000"), "0123456789");
  WriteFile(tmp.Sub("log.00000000000000000010"), "abcdefghij");
  WriteFile(tmp.Sub("log.00000000000000000020"), "kl");
  LogPaths paths = MakeLogPaths(tmp.path());
  LogWriter w{paths.a.data(), paths.b.data(), paths.digits_at, 10};
  REQUIRE(ResumeLogWriter(tmp.path(), &w).ok());
  CHECK(LogNames(tmp.path()) ==  // the oldest, left over, is gone
        std::vector<std::string>{"log.00000000000000000010", "log.00000000000000000020"});
  w.Open();
  w.Write("mnopqrst", 8);  // fills log.20, starts log.30, drops log.10
  w.Write("uvw", 3);
  w.Close();
  CHECK(LogNames(tmp.path()) ==
        std::vector<std::string>{"log.00000000000000000020", "log.00000000000000000030"});
  CHECK(ReadAll(tmp.path()) == "klmnopqrstuvw");

  // A newest file at the cap already (a smaller cap now): the next byte starts a file.
  LogPaths again = MakeLogPaths(tmp.path());
  LogWriter v{again.a.data(), again.b.data(), again.digits_at, 2};
  REQUIRE(ResumeLogWriter(tmp.path(), &v).ok());
  v.Open();
  v.Write("x", 1);
  v.Close();
  CHECK(LogNames(tmp.path()) ==
        std::vector<std::string>{"log.00000000000000000030", "log.00000000000000000033"});
  CHECK(ReadAll(tmp.path()) == "uvwx");
}

TEST_CASE("log files: output a write refuses is counted and told once writes work again") {
  TempDir tmp;
  LogPaths paths = MakeLogPaths(tmp.path());
  LogWriter w{paths.a.data(), paths.b.data(), paths.digits_at, 1000};
  w.lost_prefix = "petrel-logger: ";
  w.Open();
  w.Write("hello\n", 6);
  // A file size limit stands in for a full disk: writes past it fail (EFBIG).
  struct rlimit was;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &was) == 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = was;
  small.rlim_cur = 8;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  w.Write("abcdef\n", 7);  // "ab" fits
  w.Write("gone\n", 5);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &was) == 0);
  signal(SIGXFSZ, old_handler);
  w.Write("next\n", 5);
  w.Close();
  // The cut line is ended, then the count of what is missing, then the output goes on.
  CHECK(ReadAll(tmp.path()) ==
        "hello\nab\npetrel-logger: 10 bytes of output lost: write error\nnext\n");
}

TEST_CASE("ContainerdLogUri escapes the path and the values as Go's net/url decodes them") {
  CHECK(ContainerdLogUri("/usr/sbin/petreld", "/var/lib/petrel/ctd/c1", 1048576) ==
        "binary:///usr/sbin/petreld?petrel-log-dir=%2Fvar%2Flib%2Fpetrel%2Fctd%2Fc1"
        "&petrel-log-max=1048576");
  const std::string odd = "/tmp/a b+c;d&e=f%g?h#i";
  const std::string uri = ContainerdLogUri("/opt/my bin/pet#reld", odd, 7);
  CHECK(uri.rfind("binary:///opt/my%20bin/pet%23reld?petrel-log-dir=", 0) == 0);
  // Nothing left that ends the path or a pair, or that Go reads differently.
  const std::string query = uri.substr(uri.find('?') + 1);
  CHECK(query.find_first_of(" +;#?") == std::string::npos);
  const size_t amp = query.find('&');
  REQUIRE(amp != std::string::npos);
  std::string dir;
  REQUIRE(PercentDecode(query.substr(query.find('=') + 1, amp - query.find('=') - 1), true, &dir));
  CHECK(dir == odd);
  CHECK(query.substr(amp + 1) == "petrel-log-max=7");
  // A lease adds its pair of keys, its path escaped as the directory is.
  CHECK(ContainerdLogUri("/p", "/d", 9, ContainerLease{"/run/petrel/a b.lease", 1500}) ==
        "binary:///p?petrel-log-dir=%2Fd&petrel-log-max=9"
        "&petrel-log-lease=%2Frun%2Fpetrel%2Fa%20b.lease&petrel-log-lease-ms=1500");
}

TEST_CASE("ParseLoggerArgs takes the pairs in any order and names what is wrong") {
  auto parse = [](std::vector<std::string> words) {
    std::vector<char*> argv;
    static std::string argv0 = "/usr/sbin/petreld";
    argv.push_back(argv0.data());
    for (std::string& w : words) argv.push_back(w.data());
    return ParseLoggerArgs(static_cast<int>(argv.size()), argv.data());
  };
  Result<LoggerArgs> a = parse({"petrel-log-max", "4096", "petrel-log-dir", "/d"});
  REQUIRE(a.ok());
  CHECK(a->dir == "/d");
  CHECK(a->max_bytes == 4096);
  CHECK(parse({"petrel-log-dir", "/d"}).status().message() == "missing petrel-log-max");
  CHECK(parse({"petrel-log-max", "1"}).status().message() == "missing petrel-log-dir");
  CHECK(parse({"petrel-log-dir", "d", "petrel-log-max", "1"}).status().message() ==
        "petrel-log-dir: not an absolute path: d");
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "12x"}).status().message() ==
        "petrel-log-max: not a positive number: 12x");
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "0"}).status().IsInvalidArgument());
  CHECK(parse({"petrel-log-dir", "/d", "other", ""}).status().message() ==
        "unknown argument other");
  CHECK(parse({"petrel-log-dir"}).status().IsInvalidArgument());
  Result<LoggerArgs> leased = parse({"petrel-log-lease-ms", "1500", "petrel-log-dir", "/d",
                                     "petrel-log-lease", "/l", "petrel-log-max", "1"});
  REQUIRE(leased.ok());
  CHECK(leased->lease == ContainerLease{"/l", 1500});
  CHECK(a->lease.empty());
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "1", "petrel-log-lease", "/l"})
            .status()
            .message() == "petrel-log-lease and petrel-log-lease-ms go together");
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "1", "petrel-log-lease-ms", "5"})
            .status()
            .message() == "petrel-log-lease and petrel-log-lease-ms go together");
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "1", "petrel-log-lease", "l",
               "petrel-log-lease-ms", "5"})
            .status()
            .message() == "petrel-log-lease: not an absolute path: l");
  CHECK(parse({"petrel-log-dir", "/d", "petrel-log-max", "1", "petrel-log-lease", "/l",
               "petrel-log-lease-ms", "-5"})
            .status()
            .message() == "petrel-log-lease-ms: not a positive number: -5");
}

// The logger, started as pkg/process/io.go NewBinaryIO starts one: fd 3 and fd 4 the
// read ends of two pipes, fd 5 the write end of the ready pipe, the query's pairs as
// arguments, CONTAINER_ID and CONTAINER_NAMESPACE the whole environment, stdin and
// stdout /dev/null. Its stderr comes back on `err`.
struct Logger {
  pid_t pid = -1;
  int out = -1, err_w = -1, ready = -1, err = -1;

  explicit Logger(std::vector<std::string> args) {
    int o[2], e[2], r[2], s[2];
    REQUIRE(pipe2(o, O_CLOEXEC) == 0);
    REQUIRE(pipe2(e, O_CLOEXEC) == 0);
    REQUIRE(pipe2(r, O_CLOEXEC) == 0);
    REQUIRE(pipe2(s, O_CLOEXEC) == 0);
    args.insert(args.begin(), PETREL_CONTAINERD_LOGGER);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string id = "CONTAINER_ID=c1", ns = "CONTAINER_NAMESPACE=petrel";
    char* envp[] = {id.data(), ns.data(), nullptr};
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int null = open("/dev/null", O_RDWR);
      // Above 5 first, so that no dup2 below overwrites a source still needed.
      // (close-on-exec: the copies at 2..5 are the only ones the logger gets).
      int fds[4] = {fcntl(o[0], F_DUPFD_CLOEXEC, 10), fcntl(e[0], F_DUPFD_CLOEXEC, 10),
                    fcntl(r[1], F_DUPFD_CLOEXEC, 10), fcntl(s[1], F_DUPFD_CLOEXEC, 10)};
      dup2(null, 0);
      dup2(null, 1);
      dup2(fds[3], 2);
      dup2(fds[0], 3);
      dup2(fds[1], 4);
      dup2(fds[2], 5);
      execve(argv[0], argv.data(), envp);
      _exit(127);
    }
    close(o[0]);
    close(e[0]);
    close(r[1]);
    close(s[1]);
    out = o[1];
    err_w = e[1];
    ready = r[0];
    err = s[0];
  }
  ~Logger() {
    for (int fd : {out, err_w, ready, err}) {
      if (fd >= 0) close(fd);
    }
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  // As the shim: one byte or end of file means ready.
  bool Ready() {
    char b;
    return read(ready, &b, 1) == 0;
  }
  void Put(int fd, const std::string& s) {
    REQUIRE(write(fd, s.data(), s.size()) == ssize_t(s.size()));
  }
  void CloseOutput() {
    close(out);
    close(err_w);
    out = err_w = -1;
  }
  // The exit code, and what it said on stderr.
  int Wait(std::string* said = nullptr) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    pid = -1;
    char buf[512];
    ssize_t n;
    while ((n = read(err, buf, sizeof(buf))) > 0) {
      if (said != nullptr) said->append(buf, static_cast<size_t>(n));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

TEST_CASE("the logger writes stdout and stderr into the rotated files as the shim hands them") {
  TempDir tmp;
  Logger logger({"petrel-log-max", "64", "petrel-log-dir", tmp.path()});
  REQUIRE(logger.Ready());  // before any output: the shim starts the container after it
  std::string all;
  // One stream's bytes are in the files before the other's are written: the order the
  // logger saw them in is the order kept.
  auto put = [&](int fd, const std::string& line) {
    logger.Put(fd, line);
    all += line;
    const int64_t want = static_cast<int64_t>(all.size());
    REQUIRE(WaitFor([&] { return ReadLogFiles(tmp.path(), {})->end_offset == want; }, 10));
  };
  for (int i = 0; i < 10; i++) {
    put(logger.out, "out " + std::to_string(i) + "\n");
    put(logger.err_w, "err " + std::to_string(i) + "\n");
  }
  logger.CloseOutput();
  std::string said;
  CHECK(logger.Wait(&said) == 0);
  CHECK(said.empty());
  // 120 bytes at 64 a file: log.0 (full) and log.64, both kept, read back with offsets.
  CHECK(LogNames(tmp.path()) ==
        std::vector<std::string>{"log.00000000000000000000", "log.00000000000000000064"});
  Result<LogChunk> chunk = ReadLogFiles(tmp.path(), LogOptions{0, 1 << 20});
  REQUIRE(chunk.ok());
  CHECK(chunk->data == all);
  CHECK(chunk->start_offset == 0);
  CHECK(chunk->end_offset == static_cast<int64_t>(all.size()));
  CHECK(ReadLogFiles(tmp.path(), LogOptions{64, 8})->data == all.substr(64, 8));

  // A logger started again for the same container continues the offsets.
  Logger again({"petrel-log-dir", tmp.path(), "petrel-log-max", "64"});
  REQUIRE(again.Ready());
  again.Put(again.out, "more\n");
  again.CloseOutput();
  CHECK(again.Wait() == 0);
  CHECK(ReadAll(tmp.path(), 64) == all.substr(64) + "more\n");
  CHECK(LogNames(tmp.path()).size() == 2);
}

TEST_CASE("the logger drains what the pipes hold and exits 0 on SIGTERM") {
  TempDir tmp;
  Logger logger({"petrel-log-dir", tmp.path(), "petrel-log-max", "1048576"});
  REQUIRE(logger.Ready());
  logger.Put(logger.out, "before the end\n");
  logger.Put(logger.err_w, "on stderr\n");
  // The writing ends stay open, as a container's leftover process may hold them.
  REQUIRE(kill(logger.pid, SIGTERM) == 0);
  CHECK(logger.Wait() == 0);
  const std::string got = ReadAll(tmp.path());
  CHECK(got.find("before the end\n") != std::string::npos);
  CHECK(got.find("on stderr\n") != std::string::npos);
  CHECK(got.size() == 25);
}

// A process that stands for a task's init (`sleep 60`): its pid, -1 when fork failed.
static pid_t StandInTask() {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// A process of the test's stands for the task: the logger kills it through the pid
// file once the lease is not renewed, and leaves it alone while it is.
TEST_CASE("the logger with a lease kills the task once the lease runs out, not before") {
  TempDir tmp;
  const std::string lease = tmp.Sub("node.lease");
  const pid_t task = StandInTask();
  REQUIRE(task > 0);
  REQUIRE(WriteFileAtomic(tmp.Sub("task.pid"), std::to_string(task) + "\n").ok());
  REQUIRE(testing::ReplaceFile(lease, LeaseText(LeaseClockNow())));
  Logger logger({"petrel-log-dir", tmp.path(), "petrel-log-max", "65536", "petrel-log-lease", lease,
                 "petrel-log-lease-ms", "800"});
  REQUIRE(logger.Ready());
  // Renewed for 1.5 s: the task lives on.
  TimeMs renewed = 0;
  for (int i = 0; i < 15; i++) {
    renewed = LeaseClockNow();
    REQUIRE(testing::ReplaceFile(lease, LeaseText(renewed)));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    int status = 0;
    REQUIRE(waitpid(task, &status, WNOHANG) == 0);
  }
  // Not renewed: killed after 800 ms (bounds for a busy machine).
  int status = 0;
  REQUIRE(waitpid(task, &status, 0) == task);
  const TimeMs dead_after = LeaseClockNow() - renewed;
  MESSAGE("killed " << dead_after << " ms after the last renewal (lease 800 ms)");
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(dead_after >= 800);
  CHECK(dead_after < 800 + 1500);
  const std::string said = "petrel-logger: lease " + lease + " ran out: killed the container\n";
  CHECK(WaitFor([&] { return ReadAll(tmp.path()) == said; }, 10));
  logger.CloseOutput();
  CHECK(logger.Wait() == 0);
}

// A process of the test's stands for the task's init; the test keeps the pipes' writing
// ends open, as containerd's shim does until the task is deleted.
TEST_CASE("the logger says it has drained once the task has ended, its whole output written") {
  TempDir tmp;
  const std::string drained = tmp.Sub("drained");
  const pid_t task = StandInTask();
  REQUIRE(task > 0);
  Logger logger({"petrel-log-dir", tmp.path(), "petrel-log-max", "1048576"});
  REQUIRE(logger.Ready());
  // The pid comes after the logger started, as the driver writes it after the create.
  REQUIRE(WriteFileAtomic(tmp.Sub("task.pid"), std::to_string(task) + "\n").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  struct stat st;
  CHECK(stat(drained.c_str(), &st) != 0);  // the task runs
  // Output left in the pipes at the end (under a pipe's 64 KiB each): all of it is in
  // the files by the time the drained file is there.
  std::string out, err;
  for (int i = 0; out.size() < 40000; i++) out += "out line " + std::to_string(i) + "\n";
  for (int i = 0; err.size() < 20000; i++) err += "err line " + std::to_string(i) + "\n";
  logger.Put(logger.out, out);
  logger.Put(logger.err_w, err);
  REQUIRE(kill(task, SIGKILL) == 0);
  REQUIRE(WaitFor([&] { return stat(drained.c_str(), &st) == 0; }, 5));
  CHECK(ReadAll(tmp.path()).size() == out.size() + err.size());
  REQUIRE(waitpid(task, nullptr, 0) == task);
  // Output after the end (nobody can write then; here the test can): still logged.
  logger.Put(logger.out, "late\n");
  CHECK(WaitFor([&] { return ReadAll(tmp.path()).size() == out.size() + err.size() + 5; }, 5));
  logger.CloseOutput();
  CHECK(logger.Wait() == 0);

  // A task gone before its pid came (it ended at once): drained as soon as it comes.
  TempDir gone;
  Logger quick({"petrel-log-dir", gone.path(), "petrel-log-max", "1048576"});
  REQUIRE(quick.Ready());
  quick.Put(quick.out, "said\n");
  REQUIRE(WriteFileAtomic(gone.Sub("task.pid"), std::to_string(task) + "\n").ok());  // reaped
  REQUIRE(WaitFor([&] { return stat(gone.Sub("drained").c_str(), &st) == 0; }, 5));
  CHECK(ReadAll(gone.path()) == "said\n");
  quick.CloseOutput();
  CHECK(quick.Wait() == 0);
}

TEST_CASE("the logger refuses bad arguments with exit code 2 and one line on stderr") {
  TempDir tmp;
  struct Case {
    std::vector<std::string> args;
    std::string said;
  };
  const std::vector<Case> cases = {
      {{"petrel-log-dir", tmp.path()}, "petrel-logger: missing petrel-log-max\n"},
      {{"petrel-log-dir", tmp.path(), "petrel-log-max", "-5"},
       "petrel-logger: petrel-log-max: not a positive number: -5\n"},
      {{"petrel-log-dir", tmp.Sub("nope"), "petrel-log-max", "10"},
       "petrel-logger: petrel-log-dir " + tmp.Sub("nope") + ": No such file or directory\n"},
      {{"petrel-log-dir", tmp.path(), "petrel-log-max", "10", "colour", "red"},
       "petrel-logger: unknown argument colour\n"},
  };
  for (const Case& c : cases) {
    Logger logger(c.args);
    CHECK(logger.Ready());  // exiting closes fd 5 too: the shim does not hang
    std::string said;
    CHECK(logger.Wait(&said) == 2);
    CHECK(said == c.said);
  }
  CHECK(LogNames(tmp.path()).empty());
}

}  // namespace
}  // namespace petrel::internal

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
