#include "lib/util/workers.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace petrel::internal {

Mailbox::Mailbox() {
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) fd_errno_ = errno;
}

Mailbox::~Mailbox() {
  if (fd_ >= 0) close(fd_);
}

Status Mailbox::CheckFd() const {
  if (fd_ >= 0) return Status::OK();
  return Status::IOError(std::string("eventfd: ") + strerror(fd_errno_));
}

// The eventfd is written after the lock is let go: a worker descheduled in its write
// then holds no lock the loop's Drain needs.
void Mailbox::Post(Letter letter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    letters_.push_back(std::move(letter));
  }
  Wake();
}

void Mailbox::Wake() {
  if (fd_ < 0) return;
  const uint64_t one = 1;
  // EAGAIN only when the counter is full, and then the descriptor is readable anyway.
  while (write(fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

size_t Mailbox::Drain() {
  if (fd_ >= 0) {
    uint64_t count;
    while (read(fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
    }
  }
  size_t ran = 0;
  for (;;) {
    Letter letter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (letters_.empty()) return ran;
      letter = std::move(letters_.front());
      letters_.pop_front();
    }
    letter();
    ++ran;
  }
}

void Mailbox::Close() {
  std::deque<Letter> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    dropped.swap(letters_);
  }
}

WorkerPool::WorkerPool(size_t threads, std::string name, int nice)
    : name_(std::move(name)), nice_(nice) {
  sem_init(&work_sem_, /*pshared=*/0, 0);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; i++) threads_.emplace_back([this] { Work(); });
}

WorkerPool::~WorkerPool() {
  std::deque<std::function<void()>> dropped;  // destroyed after the lock is released
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  for (size_t i = 0; i < threads_.size(); i++) sem_post(&work_sem_);
  for (std::thread& t : threads_) t.join();
  sem_destroy(&work_sem_);
}

void WorkerPool::Submit(std::function<void()> job) {
  if (threads_.empty()) {
    job();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(job));
  }
  sem_post(&work_sem_);
}

void WorkerPool::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && running_ == 0; });
}

std::optional<int> ThreadNice() {
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  if (errno != 0) return std::nullopt;
  return nice;
}

bool SetThreadNice(int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
}

void WorkerPool::Work() {
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  if (nice_ > 0) {
    if (std::optional<int> current = ThreadNice()) (void)SetThreadNice(*current + nice_);
  }
  for (;;) {
    while (sem_wait(&work_sem_) != 0 && errno == EINTR) {
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    if (queue_.empty()) continue;  // not expected: one post per job
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    job();
    job = nullptr;  // whatever it captured goes now, not under the lock
    lock.lock();
    --running_;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

void Semaphore::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return free_ > 0; });
  --free_;
}

void Semaphore::Release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++free_;
  }
  cv_.notify_one();
}

}  // namespace petrel::internal
