// Store: petrel's SQLite database in the state directory.
//
// Tables: desired workloads (spec JSON, template hash, generation), replica status
// (one row per workload replica, changed in place), and the event log (a ring of
// `event_log_capacity` rows, overwritten in place, oldest first to go).
//
// Durability: PutWorkloads and DeleteWorkload commit with synchronous=FULL; when they
// return OK the change survives a power cut. WriteObserved commits with
// synchronous=NORMAL (WAL): it survives a kill -9 of the process, and at worst the last
// few observed-state commits are lost on power loss, which the next resync re-derives.
//
// Thread-safety: none. The owner (the Orchestrator) serialises calls with its mutex.
#ifndef PETREL_LIB_STORE_STORE_H_
#define PETREL_LIB_STORE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "petrel/spec.h"
#include "petrel/status.h"

namespace petrel::internal {

struct StoreOptions {
  std::string state_dir;  // created with mode 0700 if missing
  int64_t event_log_capacity = 10000;
};

struct WorkloadRow {
  std::string name;
  std::string spec_json;  // SpecToJson() of the spec
  std::string spec_hash;  // TemplateHash() of the spec
  int64_t generation = 0;
  TimeMs updated_at = 0;  // when the spec last changed
  TimeMs created_at = 0;  // when the workload was first stored; kept by later puts
  TimeMs deleted_at = 0;  // != 0: deleted, Terminating until its last container is gone
};

// What PutWorkloads did to one row.
enum class PutOutcome { kCreated, kConfigured, kUnchanged };

class Store {
 public:
  // The schema version this build writes. A database with a higher user_version is
  // refused with FailedPrecondition; a lower one is migrated forward.
  static constexpr int kSchemaVersion = 3;

  // Opens or creates <state_dir>/petrel.db (WAL, foreign keys on). Errors name the path
  // and say what is wrong: "state dir /x: not writable", "... disk full",
  // "database /x/petrel.db has schema version 7, newer than this petrel's 1".
  static Status Open(const StoreOptions& options, std::unique_ptr<Store>* result);

  virtual ~Store() = default;

  // Upserts rows in one transaction, all or nothing. A row whose spec_json equals the
  // stored one is left untouched (kUnchanged, no write at all); otherwise generation
  // becomes stored+1 (1 when new). A row that was Terminating comes back as created
  // (kCreated, created_at reset), whatever its spec. `outcomes` and `generations` get
  // one entry per row. When every row is unchanged nothing is written to the database.
  virtual Status PutWorkloads(const std::vector<WorkloadRow>& rows,
                              std::vector<PutOutcome>* outcomes,
                              std::vector<int64_t>* generations) = 0;

  // Marks the workload deleted at `now` (Terminating): its row and its replica rows stay
  // until WriteObserved purges them, once its last container is gone. NotFound if
  // absent or already Terminating.
  virtual Status DeleteWorkload(const std::string& name, TimeMs now) = 0;

  virtual Status LoadWorkloads(std::vector<WorkloadRow>* rows) = 0;
  virtual Status LoadReplicas(std::vector<ReplicaStatus>* rows) = 0;

  // One transaction: upserts the given replica rows (keyed by workload + index),
  // deletes the given (workload, index) rows, appends the events (their seq is
  // assigned by the caller and must continue LastEventSeq()), and purges the given
  // Terminating workloads with their replica rows (a workload that is not Terminating
  // is left alone). Writes nothing when all four are empty. A replica row for a
  // workload that does not exist is skipped.
  virtual Status WriteObserved(const std::vector<ReplicaStatus>& upserts,
                               const std::vector<std::pair<std::string, int>>& deletes,
                               const std::vector<Event>& events,
                               const std::vector<std::string>& purges) = 0;
  // The same with no purge.
  Status WriteObserved(const std::vector<ReplicaStatus>& upserts,
                       const std::vector<std::pair<std::string, int>>& deletes,
                       const std::vector<Event>& events) {
    return WriteObserved(upserts, deletes, events, {});
  }

  // Events with seq > after_seq, oldest first, at most `limit`.
  virtual Status LoadEvents(int64_t after_seq, size_t limit, std::vector<Event>* events) = 0;
  // The highest seq stored, 0 when none.
  virtual int64_t LastEventSeq() = 0;

  // SQLite's total_changes() of this connection: lets tests prove an idle loop
  // writes nothing.
  virtual int64_t TotalChanges() = 0;
};

// Creates `dir` if missing, like mkdir -p, each new directory with mode 0700 (an
// existing directory is left as it is), and checks this process may create files in it. Errors name
// the dir and the reason.
Status PrepareStateDir(const std::string& dir);

}  // namespace petrel::internal

#endif  // PETREL_LIB_STORE_STORE_H_
