#include "lib/core/store_writer.h"

namespace petrel::internal {

void StoreWriter::Push(ObservedBatch batch) {
  if (batch.empty()) return;
  std::lock_guard<std::mutex> lock(queue_mu_);
  queue_.push_back(std::move(batch));
}

void StoreWriter::FlushLocked() {
  for (;;) {
    ObservedBatch batch;
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      if (queue_.empty()) return;
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    Status s = store_->WriteObserved(batch.upserts, batch.deletes, batch.events, batch.purges);
    if (!s.ok() && on_failure_) on_failure_(batch, s);
  }
}

void StoreWriter::Flush() {
  std::lock_guard<std::mutex> lock(store_mu_);
  FlushLocked();
}

std::vector<Event> StoreWriter::UnwrittenLocked(int64_t after_seq) {
  std::vector<Event> out;
  std::lock_guard<std::mutex> lock(queue_mu_);
  for (const ObservedBatch& b : queue_) {
    for (const Event& e : b.events) {
      if (e.seq > after_seq) out.push_back(e);
    }
  }
  return out;
}

}  // namespace petrel::internal
