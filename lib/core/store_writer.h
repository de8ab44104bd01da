// StoreWriter: how observed state and events reach the database without the loop
// thread ever waiting for a disk.
//
// The loop queues a batch (Push, a few copies under a small lock) and hands the write
// to petrel's store thread; a caller that may block (Step mode, Apply, Delete) writes
// what is queued itself. Either way batches reach the database in the order they were
// queued, so events reach the ring in sequence order, and always under the store's
// mutex: the one lock that is held across a commit. Until a batch is written its
// events are still readable (Unwritten), so a reader of the event log misses none.
//
// Thread-safety: every method may be called from any thread.
#ifndef PETREL_LIB_CORE_STORE_WRITER_H_
#define PETREL_LIB_CORE_STORE_WRITER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lib/store/store.h"
#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

// One Store::WriteObserved call.
struct ObservedBatch {
  std::vector<ReplicaStatus> upserts;
  std::vector<std::pair<std::string, int>> deletes;
  std::vector<Event> events;
  std::vector<std::string> purges;
  bool empty() const {
    return upserts.empty() && deletes.empty() && events.empty() && purges.empty();
  }
};

class StoreWriter {
 public:
  // Called for a batch that could not be written, under store_mu(): its replica rows
  // and purges must be written again later; its events stay delivered but unstored.
  using FailureHandler = std::function<void(const ObservedBatch& batch, const Status& s)>;

  StoreWriter(Store* store, FailureHandler on_failure)
      : store_(store), on_failure_(std::move(on_failure)) {}
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Held across every use of the Store: by Flush, and by the callers that write
  // desired state (Apply, Delete) or read events.
  std::mutex& store_mu() { return store_mu_; }

  // Queues `batch` (nothing when empty).
  void Push(ObservedBatch batch);
  // Writes every batch queued so far, oldest first. REQUIRES: store_mu() held.
  void FlushLocked();
  // Takes store_mu() and flushes.
  void Flush();
  // Queued events with seq > after_seq, oldest first. REQUIRES: store_mu() held (so
  // no flush moves them into the database meanwhile).
  std::vector<Event> UnwrittenLocked(int64_t after_seq);

 private:
  Store* const store_;
  const FailureHandler on_failure_;
  std::mutex store_mu_;
  std::mutex queue_mu_;  // guards queue_; taken after store_mu_ when both are held
  std::deque<ObservedBatch> queue_;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_CORE_STORE_WRITER_H_
