#include "lib/util/fork.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/util/workers.h"

namespace petrel::internal {

pid_t RawFork() {
#if PETREL_TSAN
  return fork();
#else
  return static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr));
#endif
}

std::optional<int> RaiseToMainThreadPriority() {
  const std::optional<int> mine = ThreadNice();
  if (!mine) return std::nullopt;
  errno = 0;
  const int main = getpriority(PRIO_PROCESS, static_cast<id_t>(getpid()));
  if (errno != 0 || main >= *mine) return std::nullopt;
  if (!SetThreadNice(main)) return std::nullopt;
  return mine;
}

void CloseFrom(int first) {
  if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
  for (int fd = first; fd < 4096; fd++) close(fd);
}

void ResetSignals() {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &sa, nullptr);  // EINVAL for some: fine
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace petrel::internal
