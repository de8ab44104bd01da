// The Mailbox (lib/util/workers.h): letters come back to the owner's thread in order,
// and its eventfd is readable exactly while something waits, which is what the loop
// polls instead of a uv_async_t.
#include "lib/util/workers.h"

#include <poll.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "doctest/doctest.h"

namespace petrel::internal {
namespace {

bool Readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

TEST_SUITE("workers") {
  TEST_CASE("a Mailbox's descriptor is readable while letters wait, and Drain runs them in order") {
    Mailbox mailbox;
    REQUIRE(mailbox.CheckFd().ok());
    REQUIRE(mailbox.fd() >= 0);
    CHECK_FALSE(Readable(mailbox.fd()));
    std::vector<int> ran;
    mailbox.Post([&] { ran.push_back(1); });
    mailbox.Post([&] {
      ran.push_back(2);
      mailbox.Post([&] { ran.push_back(3); });  // posted while draining: runs in this Drain
    });
    CHECK(Readable(mailbox.fd()));
    CHECK(mailbox.Drain() == 3);
    CHECK(ran == std::vector<int>{1, 2, 3});
    // The letter posted during the Drain woke the descriptor after Drain cleared it: one
    // more empty Drain at most, never a letter left behind.
    mailbox.Drain();
    CHECK_FALSE(Readable(mailbox.fd()));
    CHECK(mailbox.Drain() == 0);
  }

  TEST_CASE("Wake makes the descriptor readable without a letter and Drain clears it") {
    Mailbox mailbox;
    mailbox.Wake();
    mailbox.Wake();
    CHECK(Readable(mailbox.fd()));
    CHECK(mailbox.Drain() == 0);
    CHECK_FALSE(Readable(mailbox.fd()));
  }

  TEST_CASE("a closed Mailbox drops what waits and every later letter") {
    Mailbox mailbox;
    int ran = 0;
    mailbox.Post([&] { ran++; });
    mailbox.Close();
    mailbox.Post([&] { ran++; });
    CHECK(mailbox.Drain() == 0);
    CHECK(ran == 0);
  }

  // What the Orchestrator, the API server and the cluster do: a uv_poll_t on the
  // descriptor drains letters posted by other threads.
  TEST_CASE("a libuv loop polling the descriptor runs every letter posted from other threads") {
    Mailbox mailbox;
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    struct State {
      Mailbox* mailbox = nullptr;
      int ran = 0;
      uv_poll_t poll{};
    } state;
    state.mailbox = &mailbox;
    REQUIRE(uv_poll_init(&loop, &state.poll, mailbox.fd()) == 0);
    state.poll.data = &state;
    constexpr int kThreads = 4, kEach = 500;
    uv_poll_start(&state.poll, UV_READABLE, [](uv_poll_t* h, int, int) {
      auto* s = static_cast<State*>(h->data);
      s->mailbox->Drain();
      if (s->ran == kThreads * kEach) uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    });
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; t++) {
      posters.emplace_back([&] {
        for (int i = 0; i < kEach; i++) mailbox.Post([&] { state.ran++; });  // loop thread only
      });
    }
    uv_run(&loop, UV_RUN_DEFAULT);  // returns once the poll handle is closed
    for (std::thread& t : posters) t.join();
    CHECK(state.ran == kThreads * kEach);
    CHECK(uv_loop_close(&loop) == 0);
  }

  TEST_CASE("a WorkerPool's threads run at its nice value above the caller's") {
    const std::optional<int> mine = ThreadNice();
    REQUIRE(mine.has_value());
    std::atomic<int> seen{-100};
    WorkerPool pool(1, "nice-test", 3);
    pool.Submit([&] { seen = ThreadNice().value_or(-100); });
    pool.WaitIdle();
    // The kernel caps nice at 19.
    CHECK(seen.load() == std::min(*mine + 3, 19));
    CHECK(ThreadNice() == mine);  // the caller's own is untouched
  }

  TEST_CASE("SetThreadNice changes the calling thread's nice value only") {
    const std::optional<int> mine = ThreadNice();
    REQUIRE(mine.has_value());
    std::optional<int> inside;
    std::thread t([&] {
      if (SetThreadNice(std::min(*mine + 2, 19))) inside = ThreadNice();
    });
    t.join();
    CHECK(inside == std::min(*mine + 2, 19));
    CHECK(ThreadNice() == mine);
  }

}  // TEST_SUITE

}  // namespace
}  // namespace petrel::internal
