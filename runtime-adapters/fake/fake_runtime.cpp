#include "petrel/testing/fake_runtime.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "lib/util/fs.h"
#include "lib/util/lease.h"
#include "lib/util/sha256.h"
#include "petrel/spec.h"
#include "petrel/testing/fake_program.h"

namespace petrel::testing {
namespace {

constexpr char kFakeImages[] = "fake:";       // images that hold the interpreter alone
constexpr int64_t kFakeImageBytes = 1 << 20;  // what every fake image takes "on disk"

// What SIGTERM does to a container's process.
struct Term {
  enum class Action { kDefault, kIgnore, kTrap };
  Action action = Action::kDefault;
  int code = 0;      // kTrap: the exit code
  std::string text;  // kTrap: printed first, with a newline, unless empty
};

}  // namespace

struct FakeHost::State {
  struct Container {
    ContainerInfo info;
    ContainerSpec spec;
    std::string log;       // the output kept
    int64_t log_base = 0;  // the offset of log[0]: what the cap dropped before it
    Term term;
    // The root filesystem and the tmpfs mounts: files by their path in the container.
    std::map<std::string, std::string> files;
  };

  std::mutex mu;
  std::vector<Container> containers;  // creation order; few, so linear search is fine
  bool ignore_sigterm = false;
  int64_t log_limit = 0;
  int next_id = 1;
  int next_pid = 1000;
  std::set<std::string> missing_images;
  std::vector<std::string> pulled;
  // The images pulled, by reference; an image's id is the SHA-256 of its reference.
  struct Image {
    std::string id;
    TimeMs created_at = 0;
  };
  std::map<std::string, Image> images;
  // Every runtime object over the host, with its exit handler (null when none).
  std::map<const FakeRuntime*, std::shared_ptr<ContainerRuntime::ExitHandler>> handlers;

  Container* Find(const std::string& id) {
    for (Container& c : containers) {
      if (c.info.id == id) return &c;
    }
    return nullptr;
  }

  void Append(Container* c, const std::string& text) {
    c->log += text;
    if (log_limit > 0 && static_cast<int64_t>(c->log.size()) > log_limit) {
      const size_t drop = c->log.size() - static_cast<size_t>(log_limit);
      c->log.erase(0, drop);
      c->log_base += static_cast<int64_t>(drop);
    }
  }

  void EndProcess(Container* c, int exit_code, TimeMs now) {
    c->info.state = ContainerState::kExited;
    c->info.exit_code = exit_code;
    c->info.pid = 0;
    c->info.finished_at = now;
  }

  // What signal `signal` does to c's process: its exit code, or -1 when it lives on.
  int Signal(Container* c, int signal) {
    if (signal == SIGKILL) return 128 + SIGKILL;
    if (signal != SIGTERM) return -1;
    switch (c->term.action) {
      case Term::Action::kIgnore: return -1;
      case Term::Action::kTrap:
        if (!c->term.text.empty()) Append(c, c->term.text + "\n");
        return c->term.code;
      case Term::Action::kDefault: break;
    }
    return ignore_sigterm ? -1 : 128 + SIGTERM;
  }
};

FakeHost::FakeHost() : state_(std::make_unique<State>()) {}
FakeHost::~FakeHost() = default;

namespace {

using Container = FakeHost::State::Container;

// `path` as a container's kernel resolves it when no link is on the way: absolute
// (against `cwd`), without "." or empty parts, each ".." dropping the part before it
// ("/.." is "/").
std::string CleanPath(const std::string& cwd, const std::string& path) {
  std::filesystem::path p(path.empty() || path[0] != '/' ? (cwd.empty() ? "/" : cwd) + "/" + path
                                                         : path);
  std::string clean = p.lexically_normal().string();
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  return clean;
}

// Where a path of a container's lives: a file on the host (below a bind mount) or in
// the container's memory (root filesystem, tmpfs).
struct Place {
  bool on_host = false;
  std::string path;   // on_host: the bind mount's source; else the key into Container::files
  std::string below;  // on_host: the path below `path`, clean and relative ("" for itself)
  bool read_only = false;
};

Place Resolve(const Container& c, const std::string& path) {
  const std::string clean = CleanPath(c.spec.working_dir, path);
  const MountSpec* best = nullptr;
  std::string best_target;
  for (const MountSpec& m : c.spec.mounts) {
    const std::string target = CleanPath("/", m.target);
    const bool under = clean == target || (clean.rfind(target, 0) == 0 &&
                                           (target == "/" || clean[target.size()] == '/'));
    if (under && (best == nullptr || target.size() > best_target.size())) {
      best = &m;
      best_target = target;
    }
  }
  if (best == nullptr) return {false, clean, "", c.spec.read_only_rootfs};
  if (best->type == MountSpec::Type::kTmpfs) return {false, clean, "", best->read_only};
  const size_t skip = clean == best_target ? clean.size()
                      : best_target == "/" ? 1
                                           : best_target.size() + 1;
  return {true, best->source, clean.substr(skip), best->read_only};
}

// Opens the file `place` names below its bind mount's source with `flags`, never through
// a symbolic link: the path is clean, so nothing but a link could lead out of the
// source, and a link is refused (ELOOP or ENOTDIR) where a real container would resolve
// it in its own root. Sets errno when it fails.
internal::UniqueFd OpenOnHost(const Place& place, int flags, mode_t mode = 0) {
  internal::UniqueFd dir(open(place.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return dir;
  if (place.below.empty()) return internal::UniqueFd(openat(dir.get(), ".", flags | O_CLOEXEC));
  size_t start = 0;
  for (size_t slash; (slash = place.below.find('/', start)) != std::string::npos;
       start = slash + 1) {
    const std::string part = place.below.substr(start, slash - start);
    dir = internal::UniqueFd(openat(dir.get(), part.c_str(), internal::kOpenDirFlags));
    if (!dir.valid()) return dir;
  }
  return internal::UniqueFd(
      openat(dir.get(), place.below.c_str() + start, flags | O_NOFOLLOW | O_CLOEXEC, mode));
}

// A program's process in container `c`, step by step: what it prints and what it does
// to its container.
class Interpreter {
 public:
  // The container's own process: its output goes to the container's log, and what
  // SIGTERM does is the container's.
  Interpreter(FakeHost::State* host, Container* c) : host_(host), c_(c), term_(&c->term) {}
  // A process exec'd in the container: its output goes to *out, and it runs on after
  // `timeout_ms` of sleep steps.
  Interpreter(FakeHost::State* host, Container* c, std::string* out, int64_t timeout_ms)
      : host_(host), c_(c), out_(out), term_(&exec_term_), timeout_ms_(timeout_ms) {}

  // Runs `steps` until one ends the process or waits for a signal (run, or a sleep
  // past the timeout). Returns the exit code, or -1 when the process runs on.
  int Run(const Program& steps) {
    int status = 0;
    for (const Step& step : steps) {
      if (step.verb == Step::Verb::kRun) return -1;
      if (step.verb == Step::Verb::kExit) return static_cast<int>(step.number);
      if (step.verb == Step::Verb::kSleep) {
        slept_ms_ += step.number;
        if (timeout_ms_ >= 0 && slept_ms_ >= timeout_ms_) return -1;
        continue;  // as an exit status, sleep gives 0
      }
      status = Do(step);
      if (status > 128) return status;  // killed
    }
    return status;
  }

  // Whether the last step Run did was an allocation past the container's memory limit,
  // which the kernel answers with an OOM kill.
  bool oom_killed() const { return oom_killed_; }

 private:
  // One step; returns its status (128+N when it got the process killed).
  int Do(const Step& step) {
    const ContainerSpec& spec = c_->spec;
    switch (step.verb) {
      case Step::Verb::kPrint:
      case Step::Verb::kPrintErr: return Out(step.text + "\n");
      case Step::Verb::kEnv: {
        auto it = spec.env.find(step.path);
        return Out(step.path + "=" + (it == spec.env.end() ? "" : it->second) + "\n");
      }
      case Step::Verb::kCwd: return Out((spec.working_dir.empty() ? "/" : spec.working_dir) + "\n");
      case Step::Verb::kUid:
        return Out((spec.user.empty() ? "0" : spec.user.substr(0, spec.user.find(':'))) + "\n");
      case Step::Verb::kHostname:
        return Out((spec.hostname.empty() ? spec.name : spec.hostname) + "\n");
      case Step::Verb::kCat: return Cat(step.path);
      case Step::Verb::kWrite: return Write(step.path, step.text + "\n");
      case Step::Verb::kCount: {
        char line[32];
        std::string out;
        for (int64_t i = 0; i < step.number; i++) {
          std::snprintf(line, sizeof(line), "%019lld\n", static_cast<long long>(i));
          out += line;
        }
        return Out(out);
      }
      case Step::Verb::kAlloc: {
        const int64_t limit = spec.resources.memory_bytes;
        if (limit <= 0 || (step.number << 20) <= limit) return 0;
        oom_killed_ = true;
        return 128 + SIGKILL;
      }
      case Step::Verb::kTrapTerm:
        *term_ = {Term::Action::kTrap, static_cast<int>(step.number), step.text};
        return 0;
      case Step::Verb::kIgnoreTerm: *term_ = {Term::Action::kIgnore, 0, ""}; return 0;
      case Step::Verb::kRun:
      case Step::Verb::kExit:
      case Step::Verb::kSleep: break;  // Run handles them
    }
    return 0;
  }

  int Out(const std::string& text) {
    if (out_ != nullptr) {
      *out_ += text;
    } else {
      host_->Append(c_, text);
    }
    return 0;
  }

  int Cat(const std::string& path) {
    const Place place = Resolve(*c_, path);
    const std::string refused = "cat: can't open '" + path + "': ";
    if (!place.on_host) {
      auto it = c_->files.find(place.path);
      if (it != c_->files.end()) return Out(it->second);
      return Out(refused + std::strerror(ENOENT) + "\n") + 1;
    }
    internal::UniqueFd fd = OpenOnHost(place, O_RDONLY);
    if (!fd.valid()) return Out(refused + std::strerror(errno) + "\n") + 1;
    std::string data;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof(buf))) > 0) data.append(buf, static_cast<size_t>(n));
    return Out(data);
  }

  int Write(const std::string& path, const std::string& data) {
    const Place place = Resolve(*c_, path);
    const std::string refused = "sh: can't create " + path + ": ";
    if (place.read_only) return Out(refused + std::strerror(EROFS) + "\n") + 1;
    if (!place.on_host) {
      c_->files[place.path] = data;
      return 0;
    }
    internal::UniqueFd fd = OpenOnHost(place, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd.valid() || write(fd.get(), data.data(), data.size()) != ssize_t(data.size())) {
      return Out(refused + std::strerror(errno) + "\n") + 1;
    }
    return 0;
  }

  FakeHost::State* host_;
  Container* c_;
  std::string* out_ = nullptr;  // null: the container's log
  Term exec_term_;              // an exec'd process's: no signal ever reaches it
  Term* term_;
  int64_t timeout_ms_ = -1;  // -1: none
  int64_t slept_ms_ = 0;
  bool oom_killed_ = false;
};

// The steps of a program's words (a command's after kFakeProgram, then its args).
Status ParseSteps(const std::vector<std::string>& words, Program* steps) {
  for (const std::string& w : words) {
    PETREL_ASSIGN_OR_RETURN(Step step, ParseFakeStep(w));
    steps->push_back(std::move(step));
  }
  return Status::OK();
}

// Why a binary that a fake: image lacks does not run, as a real runtime says it.
std::string MissingBinary(const std::string& binary) {
  return "exec " + binary + ": " + std::strerror(ENOENT);
}

bool IsFakeImage(const std::string& image) { return image.rfind(kFakeImages, 0) == 0; }

// What `spec` runs: a program's steps (*is_program), else nothing to interpret. An
// error when the command cannot start: a bad step, or a binary a fake: image lacks.
Status ProgramOf(const ContainerSpec& spec, bool* is_program, Program* steps) {
  *is_program = !spec.command.empty() && spec.command[0] == kFakeProgram;
  if (!*is_program) {
    if (!IsFakeImage(spec.image)) return Status::OK();
    const std::string binary = !spec.command.empty() ? spec.command[0]
                               : !spec.args.empty()  ? spec.args[0]
                                                     : "";
    if (binary.empty())
      return Status::InvalidArgument("no command, and image " + spec.image + " has none");
    return Status::IOError(MissingBinary(binary));
  }
  std::vector<std::string> words(spec.command.begin() + 1, spec.command.end());
  words.insert(words.end(), spec.args.begin(), spec.args.end());
  return ParseSteps(words, steps);
}

}  // namespace

FakeRuntime::FakeRuntime(std::shared_ptr<Clock> clock)
    : FakeRuntime(std::move(clock), std::make_shared<FakeHost>()) {}

FakeRuntime::FakeRuntime(std::shared_ptr<Clock> clock, std::shared_ptr<FakeHost> host)
    : clock_(std::move(clock)), host_(std::move(host)), state_(*host_->state_) {
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.handlers[this] = nullptr;
}

FakeRuntime::~FakeRuntime() {
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.handlers.erase(this);
}

void FakeRuntime::Door(Op op) {
  std::unique_lock<std::mutex> lock(door_mu_);
  if (!held_.count(op)) return;
  // Waits for the next Release, not for op to be unheld: a Hold right after it must
  // not keep this call, which that Release let through, at the door.
  const uint64_t release = releases_[op];
  ++waiting_[op];
  door_cv_.notify_all();
  door_cv_.wait(lock, [&] { return releases_[op] != release; });
  --waiting_[op];
}

void FakeRuntime::Hold(Op op) {
  std::lock_guard<std::mutex> lock(door_mu_);
  held_.insert(op);
}

void FakeRuntime::Release(Op op) {
  {
    std::lock_guard<std::mutex> lock(door_mu_);
    held_.erase(op);
    ++releases_[op];
  }
  door_cv_.notify_all();
}

bool FakeRuntime::AwaitHeld(Op op, int n, int timeout_ms) {
  std::unique_lock<std::mutex> lock(door_mu_);
  return door_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return waiting_[op] >= n; });
}

Status FakeRuntime::PullImage(const std::string& image, const PullOptions& options) {
  Door(Op::kPull);
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    PETREL_RETURN_IF_ERROR(TakeInjected(Op::kPull));
    const bool have = state_.images.count(image) > 0;
    if (options.policy == PullPolicy::kNever && !have) {
      return Status::FailedPrecondition(image + ": not present, and imagePullPolicy is Never");
    }
    if (state_.missing_images.count(image)) return Status::NotFound(image + ": no such image");
    state_.pulled.push_back(image);
    if (have && options.policy != PullPolicy::kAlways) return Status::OK();
    state_.images[image] = {"sha256:" + internal::Sha256Hex(image), clock_->Now()};
  }
  if (options.progress) {  // outside the lock: the listener may take its own
    PullProgress progress;
    progress.phase = "downloading";
    progress.bytes_done = progress.bytes_total = kFakeImageBytes;
    progress.layers_done = progress.layers_total = 1;
    options.progress(progress);
  }
  return Status::OK();
}

Result<std::vector<ImageInfo>> FakeRuntime::ListImages() {
  std::lock_guard<std::mutex> lock(state_.mu);
  std::map<std::string, ImageInfo> by_id;
  for (const auto& [ref, image] : state_.images) {
    ImageInfo& info = by_id[image.id];
    info.id = image.id;
    info.refs.push_back(ref);
    info.size_bytes = kFakeImageBytes;
    info.created_at =
        info.created_at ? std::min(info.created_at, image.created_at) : image.created_at;
    info.in_use = info.in_use || !ImageUserLocked(ref).empty();
  }
  std::vector<ImageInfo> out;
  for (auto& [id, info] : by_id) out.push_back(std::move(info));
  std::stable_sort(out.begin(), out.end(), [](const ImageInfo& a, const ImageInfo& b) {
    return a.created_at < b.created_at;
  });
  return out;
}

Status FakeRuntime::RemoveImage(const std::string& ref) {
  std::lock_guard<std::mutex> lock(state_.mu);
  std::string id;
  for (const auto& [r, image] : state_.images) {
    if (r == ref || image.id == ref) id = image.id;
  }
  if (id.empty()) return Status::NotFound(ref + ": no such image");
  for (const auto& [r, image] : state_.images) {
    if (image.id != id) continue;
    const std::string user = ImageUserLocked(r);
    if (!user.empty()) return Status::FailedPrecondition(ref + ": in use by container " + user);
  }
  for (auto it = state_.images.begin(); it != state_.images.end();) {
    it = it->second.id == id ? state_.images.erase(it) : std::next(it);
  }
  return Status::OK();
}

Result<PruneResult> FakeRuntime::PruneImages() {
  std::lock_guard<std::mutex> lock(state_.mu);
  std::set<std::string> used;
  for (const auto& [ref, image] : state_.images) {
    if (!ImageUserLocked(ref).empty()) used.insert(image.id);
  }
  PruneResult result;
  for (auto it = state_.images.begin(); it != state_.images.end();) {
    if (used.count(it->second.id)) {
      ++it;
      continue;
    }
    if (std::find(result.removed.begin(), result.removed.end(), it->second.id) ==
        result.removed.end()) {
      result.removed.push_back(it->second.id);
      result.bytes_freed += kFakeImageBytes;
    }
    it = state_.images.erase(it);
  }
  return result;
}

std::string FakeRuntime::ImageUserLocked(const std::string& ref) {
  for (const Container& c : state_.containers) {
    if (c.spec.image == ref) return c.info.name;
  }
  return "";
}

void FakeRuntime::SetImageMissing(const std::string& image, bool missing) {
  std::lock_guard<std::mutex> lock(state_.mu);
  if (missing) {
    state_.missing_images.insert(image);
  } else {
    state_.missing_images.erase(image);
  }
}

std::vector<std::string> FakeRuntime::Pulled() {
  std::lock_guard<std::mutex> lock(state_.mu);
  return state_.pulled;
}

Status FakeRuntime::TakeInjected(Op op) {
  ++calls_[op];
  auto it = injected_.find(op);
  if (it == injected_.end()) return Status::OK();
  Status s = it->second.first;
  if (--it->second.second <= 0) injected_.erase(it);
  return s;
}

void FakeRuntime::NotifyExit(const std::string& id, int exit_code) {
  std::vector<std::shared_ptr<ExitHandler>> handlers;
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    for (const auto& [runtime, handler] : state_.handlers) {
      if (handler) handlers.push_back(handler);
    }
  }
  for (const auto& handler : handlers) (*handler)(id, exit_code);
}

Result<std::string> FakeRuntime::Create(const ContainerSpec& spec) {
  Door(Op::kCreate);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kCreate));
  if (state_.missing_images.count(spec.image)) {
    return Status::NotFound(spec.image + ": no such image");
  }
  if (!spec.lease.empty() && !lease_support_) {
    return Status::NotSupported("create container " + spec.name +
                                ": runtime fake cannot enforce a container lease");
  }
  for (const Container& c : state_.containers) {
    if (c.info.name == spec.name) {
      return Status::AlreadyExists("container name " + spec.name + " is in use by " + c.info.id);
    }
  }
  char id[32];
  std::snprintf(id, sizeof(id), "fake%06d", state_.next_id++);
  Container c;
  c.info.id = id;
  c.info.name = spec.name;
  c.info.labels = spec.labels;
  c.info.state = ContainerState::kCreated;
  c.info.created_at = clock_->Now();
  // On the bridge: an address of its own, 10.88.0.2 up, never given twice.
  if (spec.network == NetworkMode::kBridge) {
    const int n = state_.next_id - 1;
    c.info.address = "10.88." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 2);
  }
  c.spec = spec;
  state_.containers.push_back(std::move(c));
  return std::string(id);
}

Status FakeRuntime::Start(const std::string& id) {
  Door(Op::kStart);
  int exit_code = -1;
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    PETREL_RETURN_IF_ERROR(TakeInjected(Op::kStart));
    Container* c = state_.Find(id);
    if (c == nullptr) return Status::NotFound("no container " + id);
    if (c->info.state != ContainerState::kCreated) {
      return Status::FailedPrecondition("container " + id + " is " +
                                        ContainerStateName(c->info.state) + ", not created");
    }
    c->info.started_at = clock_->Now();
    if (LeaseRunOut(c->spec.lease)) {
      state_.EndProcess(c, 255, c->info.started_at);
      return Status::FailedPrecondition("start container " + id + ": fake: lease " +
                                        c->spec.lease.path +
                                        " has run out: not starting the container");
    }
    bool is_program = false;
    Program steps;
    if (Status s = ProgramOf(c->spec, &is_program, &steps); !s.ok()) {
      state_.EndProcess(c, 127, c->info.started_at);
      return s.WithContext("start container " + id + ": fake");
    }
    c->info.state = ContainerState::kRunning;
    c->info.pid = state_.next_pid++;
    Interpreter process(&state_, c);
    if (is_program) exit_code = process.Run(steps);
    if (exit_code >= 0) state_.EndProcess(c, exit_code, clock_->Now());
    if (process.oom_killed()) c->info.exit_reason = "OOMKilled";
  }
  if (exit_code >= 0) NotifyExit(id, exit_code);
  return Status::OK();
}

Status FakeRuntime::Kill(const std::string& id, int signal) {
  Door(Op::kKill);
  int exit_code = -1;
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    PETREL_RETURN_IF_ERROR(TakeInjected(Op::kKill));
    Container* c = state_.Find(id);
    if (c == nullptr) return Status::NotFound("no container " + id);
    if (c->info.state != ContainerState::kRunning) return Status::OK();
    exit_code = state_.Signal(c, signal);
    if (exit_code >= 0) state_.EndProcess(c, exit_code, clock_->Now());
  }
  if (exit_code >= 0) NotifyExit(id, exit_code);
  return Status::OK();
}

Status FakeRuntime::Remove(const std::string& id) {
  Door(Op::kRemove);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kRemove));
  auto it = std::find_if(state_.containers.begin(), state_.containers.end(),
                         [&](const Container& c) { return c.info.id == id; });
  if (it == state_.containers.end()) return Status::NotFound("no container " + id);
  if (it->info.state == ContainerState::kRunning) {
    return Status::FailedPrecondition("container " + id + " is running");
  }
  state_.containers.erase(it);
  return Status::OK();
}

Result<std::vector<ContainerInfo>> FakeRuntime::List(
    const std::map<std::string, std::string>& selector) {
  Door(Op::kList);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kList));
  std::vector<ContainerInfo> out;
  for (const Container& c : state_.containers) {
    bool match = std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
      auto it = c.info.labels.find(kv.first);
      return it != c.info.labels.end() && it->second == kv.second;
    });
    if (match) out.push_back(c.info);
  }
  return out;
}

Result<ContainerInfo> FakeRuntime::Inspect(const std::string& id) {
  Door(Op::kInspect);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kInspect));
  if (Container* c = state_.Find(id)) return c->info;
  return Status::NotFound("no container " + id);
}

Result<LogChunk> FakeRuntime::Logs(const std::string& id, const LogOptions& options) {
  Door(Op::kLogs);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kLogs));
  const Container* c = state_.Find(id);
  if (c == nullptr) return Status::NotFound("no container " + id);
  const int64_t oldest = c->log_base;
  const int64_t end = oldest + static_cast<int64_t>(c->log.size());
  const int64_t limit =
      static_cast<int64_t>(std::min<uint64_t>(options.limit_bytes, INT64_MAX));  // no overflow
  LogChunk chunk;
  chunk.start_offset = options.since_offset < 0 ? std::max(oldest, end - limit)
                                                : std::clamp(options.since_offset, oldest, end);
  chunk.end_offset = chunk.start_offset + std::min(limit, end - chunk.start_offset);
  chunk.data = c->log.substr(static_cast<size_t>(chunk.start_offset - oldest),
                             static_cast<size_t>(chunk.end_offset - chunk.start_offset));
  return chunk;
}

Status FakeRuntime::SetHosts(const std::string& id, const std::string& hosts) {
  Door(Op::kSetHosts);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kSetHosts));
  Container* c = state_.Find(id);
  if (c == nullptr) return Status::NotFound("no container " + id);
  if (c->spec.hosts.empty()) {
    return Status::FailedPrecondition("set hosts of " + id + ": it was created without hosts");
  }
  c->spec.hosts = hosts;
  return Status::OK();
}

Result<ExecResult> FakeRuntime::Exec(const std::string& id, const ExecOptions& options) {
  Door(Op::kExec);
  std::lock_guard<std::mutex> lock(state_.mu);
  PETREL_RETURN_IF_ERROR(TakeInjected(Op::kExec));
  const std::string what = "exec in " + id;
  if (options.command.empty()) return Status::InvalidArgument(what + ": no command");
  if (options.timeout_ms <= 0) {
    return Status::InvalidArgument(what + ": the timeout must be above 0 ms, not " +
                                   std::to_string(options.timeout_ms));
  }
  Container* c = state_.Find(id);
  if (c == nullptr) return Status::NotFound("no container " + id);
  if (c->info.state != ContainerState::kRunning) {
    return Status::FailedPrecondition(what + ": container " + id + " is " +
                                      ContainerStateName(c->info.state));
  }
  ExecResult result;
  result.exit_code = 0;
  if (options.command[0] == kFakeProgram) {
    Program steps;
    Status parsed = ParseSteps(
        std::vector<std::string>(options.command.begin() + 1, options.command.end()), &steps);
    if (parsed.ok()) {
      result.exit_code = Interpreter(&state_, c, &result.output, options.timeout_ms).Run(steps);
      if (result.exit_code < 0) {
        return Status::DeadlineExceeded(what + ": timed out after " +
                                        FormatDurationMs(options.timeout_ms));
      }
    } else {
      result.exit_code = 127;
      result.output = parsed.message() + "\n";
    }
  } else if (IsFakeImage(c->spec.image)) {
    result.exit_code = 127;
    result.output = MissingBinary(options.command[0]) + "\n";
  }
  if (result.output.size() > options.output_limit) {
    result.output.resize(options.output_limit);
    result.truncated = true;
  }
  return result;
}

void FakeRuntime::SetExitHandler(ExitHandler handler) {
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.handlers[this] = handler ? std::make_shared<ExitHandler>(std::move(handler)) : nullptr;
}

Status FakeRuntime::Exit(const std::string& id, int exit_code) {
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    Container* c = state_.Find(id);
    if (c == nullptr) return Status::NotFound("no container " + id);
    if (c->info.state != ContainerState::kRunning) {
      return Status::FailedPrecondition("container " + id + " is not running");
    }
    state_.EndProcess(c, exit_code, clock_->Now());
  }
  NotifyExit(id, exit_code);
  return Status::OK();
}

bool FakeRuntime::LeaseRunOut(const ContainerLease& lease) {
  return !lease.empty() && internal::LeaseExpired(internal::ReadLease(lease.path.c_str()),
                                                  lease.duration_ms, clock_->Monotonic());
}

std::vector<std::string> FakeRuntime::CheckLeases() {
  std::vector<std::string> killed;
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    for (Container& c : state_.containers) {
      if (c.info.state != ContainerState::kRunning || !LeaseRunOut(c.spec.lease)) continue;
      state_.EndProcess(&c, 128 + SIGKILL, clock_->Now());
      killed.push_back(c.info.id);
    }
  }
  for (const std::string& id : killed) NotifyExit(id, 128 + SIGKILL);
  return killed;
}

void FakeRuntime::SetLeaseSupport(bool supported) {
  std::lock_guard<std::mutex> lock(state_.mu);
  lease_support_ = supported;
}

Status FakeRuntime::ForceRemove(const std::string& id) {
  std::lock_guard<std::mutex> lock(state_.mu);
  auto it = std::find_if(state_.containers.begin(), state_.containers.end(),
                         [&](const Container& c) { return c.info.id == id; });
  if (it == state_.containers.end()) return Status::NotFound("no container " + id);
  state_.containers.erase(it);
  return Status::OK();
}

void FakeRuntime::FailNext(Op op, Status status, int times) {
  std::lock_guard<std::mutex> lock(state_.mu);
  injected_[op] = {std::move(status), times};
}

void FakeRuntime::SetIgnoreSigterm(bool ignore) {
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.ignore_sigterm = ignore;
}

void FakeRuntime::AppendLog(const std::string& id, const std::string& text) {
  std::lock_guard<std::mutex> lock(state_.mu);
  if (Container* c = state_.Find(id)) state_.Append(c, text);
}

void FakeRuntime::SetLogLimit(int64_t bytes) {
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.log_limit = std::max<int64_t>(0, bytes);
}

Result<ContainerSpec> FakeRuntime::SpecOf(const std::string& id) {
  std::lock_guard<std::mutex> lock(state_.mu);
  if (Container* c = state_.Find(id)) return c->spec;
  return Status::NotFound("no container " + id);
}

std::vector<ContainerInfo> FakeRuntime::Containers() {
  std::lock_guard<std::mutex> lock(state_.mu);
  std::vector<ContainerInfo> out;
  for (const Container& c : state_.containers) out.push_back(c.info);
  return out;
}

int FakeRuntime::Calls(Op op) {
  std::lock_guard<std::mutex> lock(state_.mu);
  return calls_[op];
}

HeldCalls::HeldCalls(FakeRuntime* runtime, FakeRuntime::Op op) : runtime_(runtime), op_(op) {
  runtime_->Hold(op_);
}

HeldCalls::~HeldCalls() { Release(); }

void HeldCalls::Release() {
  if (runtime_ == nullptr) return;
  runtime_->Release(op_);
  runtime_ = nullptr;
}

Status RegisterFakeRuntime(RuntimeRegistry* registry) {
  auto factory = [](const RuntimeConfig& config) -> Result<std::shared_ptr<ContainerRuntime>> {
    if (!config.endpoint.empty()) {
      return Status::InvalidArgument(
          "runtime fake takes no endpoint (its containers live in memory); got \"" +
          config.endpoint + "\"");
    }
    return std::shared_ptr<ContainerRuntime>(
        std::make_shared<FakeRuntime>(config.clock ? config.clock : SystemClock()));
  };
  return registry->Register(
      {"fake", "containers in memory that \"run\" until killed, for tests", factory});
}

}  // namespace petrel::testing
