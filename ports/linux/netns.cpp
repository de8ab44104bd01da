// The network-namespace part of the Linux port. A named namespace is kept alive by a
// bind mount of its nsfs file at <netns_dir>/<name>, as `ip netns` keeps them in
// /run/netns. RunInNetns enters a namespace on a thread made for it, which ends
// afterwards; SocketInNetns enters one for a single socket() call and returns at once.
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>

#include "lib/util/fs.h"
#include "lib/util/strings.h"
#include "ports/linux/linux_port.h"

namespace petrel::internal {
namespace {

Status CheckNetnsName(const std::string& name) {
  if (IsPlainName(name, 64)) return Status::OK();
  return Status::InvalidArgument("network namespace name \"" + name +
                                 "\": want 1-64 of A-Z a-z 0-9 _ . - not starting with '.'");
}

// Runs `fn` on a new thread and waits for it: what `fn` does to its thread's
// namespaces ends with that thread.
Status OnOwnThread(const std::function<Status()>& fn) {
  Status result;
  try {
    std::thread thread([&] { result = fn(); });
    thread.join();
  } catch (const std::system_error& e) {
    return Status::Unavailable(std::string("no thread to enter a network namespace on: ") +
                               e.what());
  }
  return result;
}

}  // namespace

std::string LinuxPort::NetnsPath(const std::string& name) {
  return options_.netns_dir + "/" + name;
}

Status LinuxPort::CreateNetns(const std::string& name) {
  PETREL_RETURN_IF_ERROR(CheckNetnsName(name));
  // A new namespace, made on a thread of its own that ends with it; kept by name.
  UniqueFd ns;
  PETREL_RETURN_IF_ERROR(OnOwnThread([&]() -> Status {
    if (unshare(CLONE_NEWNET) != 0)
      return ErrnoError(NetnsPath(name), "unshare(CLONE_NEWNET)", errno);
    ns = UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) return ErrnoError(NetnsPath(name), "open the new network namespace", errno);
    return Status::OK();
  }));
  return KeepNetns(name, ns.get());
}

Status LinuxPort::KeepNetns(const std::string& name, int netns) {
  PETREL_RETURN_IF_ERROR(CheckNetnsName(name));
  PETREL_RETURN_IF_ERROR(MakeDirs(options_.netns_dir, 0755));
  const std::string path = NetnsPath(name);
  UniqueFd file(open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!file.valid()) {
    if (errno == EEXIST) return Status::AlreadyExists("network namespace " + path + " exists");
    return ErrnoError(path, "create", errno);
  }
  file.reset();
  const std::string source = "/proc/self/fd/" + std::to_string(netns);
  if (mount(source.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
    const int err = errno;
    unlink(path.c_str());
    return ErrnoError(path, "bind mount of the network namespace", err);
  }
  return Status::OK();
}

Status LinuxPort::RunInNetns(const std::string& name, const std::function<Status()>& fn) {
  PETREL_RETURN_IF_ERROR(CheckNetnsName(name));
  const std::string path = NetnsPath(name);
  UniqueFd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) {
    if (errno == ENOENT) return Status::NotFound("no network namespace " + path);
    return ErrnoError(path, "open", errno);
  }
  return OnOwnThread([&]() -> Status {
    if (setns(ns.get(), CLONE_NEWNET) != 0) {
      // EINVAL: a file there, but no namespace mounted on it (a crash between the steps).
      return ErrnoError(path, "enter network namespace", errno);
    }
    return fn();
  });
}

Status LinuxPort::DeleteNetns(const std::string& name) {
  PETREL_RETURN_IF_ERROR(CheckNetnsName(name));
  const std::string path = NetnsPath(name);
  PETREL_RETURN_IF_ERROR(UnmountAll(path));
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(path, "remove", errno);
  return Status::OK();
}

Result<int> LinuxPort::OpenNetnsOf(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  int fd = pid > 0 ? open(path.c_str(), O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    if (pid <= 0 || errno == ENOENT || errno == ESRCH) {
      return Status::NotFound("no process " + std::to_string(pid));
    }
    return ErrnoError(path, "open", errno);
  }
  return fd;
}

// Made on the calling thread, which enters the namespace for the socket() call alone
// and goes back at once: three system calls, no thread made per socket (a probe may ask
// a hundred times a second). A namespace that is the thread's own (a container on the
// host's network) needs none of it.
Result<int> LinuxPort::SocketInNetns(int netns, int type) {
  // The calling thread's own namespace, opened once per thread (a loop thread asks
  // again and again); this function is the only one that moves a thread, and always back.
  struct Home {
    UniqueFd fd;
    struct stat st = {};
  };
  thread_local Home home;
  if (!home.fd.valid()) {
    home.fd.reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home.fd.valid() || fstat(home.fd.get(), &home.st) != 0) {
      int err = errno;
      home.fd.reset();
      return ErrnoError("/proc/thread-self/ns/net", "open", err);
    }
  }
  struct stat theirs = {};
  if (fstat(netns, &theirs) != 0) return ErrnoError("network namespace", "stat", errno);
  const bool same = theirs.st_dev == home.st.st_dev && theirs.st_ino == home.st.st_ino;
  if (!same && setns(netns, CLONE_NEWNET) != 0) {
    return ErrnoError("network namespace", "enter", errno);
  }
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int err = errno;
  if (!same && setns(home.fd.get(), CLONE_NEWNET) != 0) {
    // The thread would go on in a container's namespace: every later connect of it
    // would reach the wrong network. Cannot happen to a process allowed the first
    // setns; if it does, stopping is the only safe answer.
    std::fprintf(stderr, "petrel: cannot return to its network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  if (fd < 0) return ErrnoError("socket in a network namespace", "make", err);
  return fd;
}

}  // namespace petrel::internal
