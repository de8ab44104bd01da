// The Linux port (linux_port.h): its construction, the supervision of child processes
// and the service manager's notify. Cgroups, mounts, network namespaces and the setup
// of forked children are in the files beside this one.
#include "ports/linux/linux_port.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "lib/util/fs.h"

namespace petrel {

std::shared_ptr<Port> DefaultPort() {
  static const std::shared_ptr<Port> port =
      std::make_shared<internal::LinuxPort>(internal::LinuxPortOptions{});
  return port;
}

Result<std::shared_ptr<Port>> MakePort(const BridgeNetwork& bridge) {
  PETREL_RETURN_IF_ERROR(CheckBridgeNetwork(bridge));
  internal::LinuxPortOptions o;
  o.bridge_name = bridge.name;
  o.bridge_subnet = bridge.subnet;
  return std::shared_ptr<Port>(std::make_shared<internal::LinuxPort>(std::move(o)));
}

namespace internal {
namespace {

LinuxPortOptions Resolved(LinuxPortOptions options) {
  if (!options.notify_socket) {
    const char* env = std::getenv("NOTIFY_SOCKET");
    options.notify_socket = env != nullptr ? env : "";
  }
  return options;
}

}  // namespace

LinuxPort::LinuxPort(LinuxPortOptions options) : options_(Resolved(std::move(options))) {}

Status LinuxPort::BecomeSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return ErrnoError("this process", "prctl(PR_SET_CHILD_SUBREAPER)", errno);
  }
  return Status::OK();
}

Result<int> LinuxPort::OpenPidfd(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));  // always close-on-exec
  if (fd >= 0) return fd;
  const int err = errno;
  const std::string what = "process " + std::to_string(pid);
  if (err == ESRCH) return Status::NotFound(what + ": no such process");
  if (err == ENOSYS) return Status::NotSupported(what + ": pidfd_open: this kernel has none");
  return ErrnoError(what, "pidfd_open", err);
}

// sd_notify(3) without libsystemd: one datagram to the socket.
Status LinuxPort::NotifyServiceManager(std::string_view state) {
  const std::string& socket_name = *options_.notify_socket;
  if (socket_name.empty()) return Status::OK();
  const std::string what = "service manager socket " + socket_name;
  if (socket_name[0] != '/' && socket_name[0] != '@') {
    return Status::NotSupported(what + ": neither a path nor an abstract name (@...)");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_name.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument(what + ": longer than a socket address holds");
  }
  std::memcpy(addr.sun_path, socket_name.data(), socket_name.size());
  if (socket_name[0] == '@') addr.sun_path[0] = '\0';
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(what, "socket", errno);
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_name.size());
  if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
             reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    return ErrnoError(what, "send", errno);
  }
  return Status::OK();
}

}  // namespace internal
}  // namespace petrel
