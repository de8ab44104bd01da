// Plan() is pure: every case builds an input and checks the exact output.
#include "lib/reconcile/plan.h"

#include <doctest/doctest.h>

#include <csignal>

namespace petrel::internal {
namespace {

constexpr TimeMs kT0 = 1'700'000'000'000;

WorkloadSpec Spec(const std::string& name, int replicas) {
  WorkloadSpec s;
  s.name = name;
  s.replicas = replicas;
  s.image = "oci-archive:/images/busybox.tar";
  s.backoff.initial_ms = 1000;
  s.backoff.max_ms = 8000;
  return s;
}

ContainerInfo Container(const std::string& id, const std::string& workload, int replica,
                        const std::string& hash, ContainerState state) {
  ContainerInfo c;
  c.id = id;
  c.name = ContainerName("n1", workload, replica);
  c.labels = {{kLabelWorkload, workload},
              {kLabelReplica, std::to_string(replica)},
              {kLabelSpecHash, hash},
              {kLabelNode, "n1"}};
  c.state = state;
  c.created_at = kT0 - 5000;
  if (state != ContainerState::kCreated) c.started_at = kT0 - 5000;
  if (state == ContainerState::kRunning) c.pid = 4242;
  return c;
}

ReplicaStatus Running(const std::string& workload, int index, const std::string& id,
                      const std::string& hash) {
  ReplicaStatus r;
  r.workload = workload;
  r.index = index;
  r.phase = Phase::kRunning;
  r.container_id = id;
  r.pid = 4242;
  r.since = kT0 - 5000;
  r.spec_hash = hash;
  return r;
}

struct Fixture {
  std::vector<WorkloadSpec> specs;
  PlanInput in;
  Fixture() {
    in.node = "n1";
    in.now = kT0;
  }
  bool images_ready = true;  // every wanted image pulled already, unless a case says not
  void Want(const WorkloadSpec& s) { specs.push_back(s); }
  PlanOutput Run() {
    in.desired.clear();
    for (const WorkloadSpec& s : specs) {
      in.desired.push_back({&s, "h-" + s.image});
      if (images_ready) in.images[s.image].ready = true;
    }
    return Plan(in);
  }
  std::string Hash(size_t i) { return "h-" + specs[i].image; }
};

TEST_SUITE("plan") {
  TEST_CASE("a new workload gets one create per replica, labelled and named") {
    Fixture f;
    f.Want(Spec("web", 2));
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 2);
    for (int i = 0; i < 2; i++) {
      const Action& a = out.actions[i];
      CHECK(a.type == Action::Type::kCreate);
      CHECK(a.replica == i);
      CHECK(a.container.name == "petrel_n1_web_" + std::to_string(i));
      CHECK(a.container.labels.at(kLabelWorkload) == "web");
      CHECK(a.container.labels.at(kLabelReplica) == std::to_string(i));
      CHECK(a.container.labels.at(kLabelSpecHash) == f.Hash(0));
      CHECK(a.container.labels.at(kLabelNode) == "n1");
      CHECK(a.container.image == "oci-archive:/images/busybox.tar");
    }
    // Creating while the executor makes and starts them.
    REQUIRE(out.status_updates.size() == 2);
    for (const ReplicaStatus& r : out.status_updates) {
      CHECK(r.phase == Phase::kCreating);
      CHECK(r.message == "creating");
      CHECK(r.since == kT0);
    }
    CHECK(out.pulls.empty());
    CHECK(out.next_wakeup == kNever);
  }

  TEST_CASE("replicas wait in Pulling until their image is ready, one pull per image") {
    Fixture f;
    f.images_ready = false;
    f.Want(Spec("web", 2));
    f.Want(Spec("db", 1));  // the same image
    WorkloadSpec other = Spec("cache", 1);
    other.image = "oci:/images/other";
    f.Want(other);
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.pulls.size() == 2);
    CHECK(out.pulls[0].image == "oci-archive:/images/busybox.tar");
    CHECK(out.pulls[0].workloads == std::vector<std::string>{"web", "db"});
    CHECK(out.pulls[1].image == "oci:/images/other");
    CHECK(out.pulls[1].workloads == std::vector<std::string>{"cache"});
    REQUIRE(out.status_updates.size() == 4);
    for (const ReplicaStatus& r : out.status_updates) {
      CHECK(r.phase == Phase::kPulling);
      CHECK(r.message.rfind("waiting for image ", 0) == 0);
    }

    SUBCASE("a pull in progress is not asked for again") {
      f.in.images["oci-archive:/images/busybox.tar"].pulling = true;
      f.in.images["oci:/images/other"].pulling = true;
      out = f.Run();
      CHECK(out.pulls.empty());
      CHECK(out.actions.empty());
    }
    SUBCASE("a failed pull backs off with its message, then is asked for again") {
      ImageState& img = f.in.images["oci-archive:/images/busybox.tar"];
      img.failures = 2;
      img.next_retry = kT0 + 4000;
      img.message = "image oci-archive:/images/busybox.tar: no such file; retry in 4s";
      f.in.images["oci:/images/other"].ready = true;
      out = f.Run();
      REQUIRE(out.actions.size() == 1);  // cache's create
      CHECK(out.actions[0].workload == "cache");
      CHECK(out.pulls.empty());
      CHECK(out.next_wakeup == kT0 + 4000);
      // web's two replicas and db's wait with the pull's message; cache's creates.
      REQUIRE(out.status_updates.size() == 4);
      int waiting = 0;
      for (const ReplicaStatus& r : out.status_updates) {
        if (r.workload == "cache") continue;
        waiting++;
        CHECK(r.phase == Phase::kPulling);
        CHECK(r.message == img.message);
      }
      CHECK(waiting == 3);
      f.in.now = kT0 + 4000;
      out = f.Run();
      REQUIRE(out.pulls.size() == 1);
      CHECK(out.pulls[0].workloads == std::vector<std::string>{"web", "db"});
    }
  }

  TEST_CASE("a busy replica is left alone: no action, no status change, no event") {
    Fixture f;
    f.Want(Spec("web", 2));
    f.in.busy = {{"web", 0}, {"gone", 0}};
    f.in.containers = {Container("g0", "gone", 0, "h", ContainerState::kExited)};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].replica == 1);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].index == 1);
    CHECK(out.events.empty());
  }

  TEST_CASE("a running replica in its recorded state needs nothing") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.containers.push_back(Container("c1", "web", 0, f.Hash(0), ContainerState::kRunning));
    f.in.replicas.push_back(Running("web", 0, "c1", f.Hash(0)));
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.status_updates.empty());
    CHECK(out.events.empty());
    CHECK(out.next_wakeup == kNever);
  }

  TEST_CASE("a running container petrel has no record of is adopted, not duplicated") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.containers.push_back(Container("c1", "web", 0, f.Hash(0), ContainerState::kRunning));
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kRunning);
    CHECK(out.status_updates[0].container_id == "c1");
    REQUIRE(out.events.size() == 1);
    CHECK(out.events[0].type == "Adopted");
  }

  TEST_CASE("a created container is started") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.containers.push_back(Container("c1", "web", 0, f.Hash(0), ContainerState::kCreated));
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kStart);
    CHECK(out.actions[0].container_id == "c1");
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kCreating);
  }

  TEST_CASE("an exit under Always enters CrashLoop and restarts when the back-off ends") {
    Fixture f;
    f.Want(Spec("web", 1));
    ContainerInfo c = Container("c1", "web", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 3;
    c.finished_at = kT0 - 200;
    f.in.containers.push_back(c);
    f.in.replicas.push_back(Running("web", 0, "c1", f.Hash(0)));
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.status_updates.size() == 1);
    ReplicaStatus st = out.status_updates[0];
    CHECK(st.phase == Phase::kCrashLoop);
    CHECK(st.failures == 1);
    CHECK(st.last_exit_code == 3);
    CHECK(st.next_retry == kT0 - 200 + 1000);
    CHECK(st.since == kT0);
    CHECK(out.next_wakeup == kT0 + 800);
    REQUIRE(out.events.size() == 1);
    CHECK(out.events[0].type == "BackOff");

    // Still waiting just before the retry: nothing to do, nothing to write.
    f.in.replicas = {st};
    f.in.now = st.next_retry - 1;
    out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.status_updates.empty());
    CHECK(out.next_wakeup == st.next_retry);

    f.in.now = st.next_retry;
    out = f.Run();
    REQUIRE(out.actions.size() == 2);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.actions[0].container_id == "c1");
    CHECK(out.actions[1].type == Action::Type::kCreate);
    CHECK(out.actions[1].replica == 0);
  }

  TEST_CASE("an exit that has waited past its back-off restarts in the same pass") {
    Fixture f;
    f.Want(Spec("web", 1));
    ContainerInfo c = Container("c1", "web", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 1;
    c.finished_at = kT0 - 60000;  // exited while petrel was down
    f.in.containers.push_back(c);
    f.in.replicas.push_back(Running("web", 0, "c1", f.Hash(0)));
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 2);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.actions[1].type == Action::Type::kCreate);
  }

  TEST_CASE("back-off doubles up to max, and resets after the replica stayed up") {
    Backoff b;
    b.initial_ms = 1000;
    b.max_ms = 5000;
    CHECK(BackoffDelayMs(b, 1) == 1000);
    CHECK(BackoffDelayMs(b, 2) == 2000);
    CHECK(BackoffDelayMs(b, 3) == 4000);
    CHECK(BackoffDelayMs(b, 4) == 5000);
    CHECK(BackoffDelayMs(b, 60) == 5000);
    CHECK(BackoffResetMs(b) == 60000);
    b.initial_ms = 10000;
    b.max_ms = 300000;
    CHECK(BackoffResetMs(b) == 100000);
    b.reset_after_ms = 5000;
    CHECK(BackoffResetMs(b) == 5000);

    Fixture f;
    f.Want(Spec("web", 1));
    ReplicaStatus st = Running("web", 0, "c1", f.Hash(0));
    st.failures = 3;
    ContainerInfo c = Container("c1", "web", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 1;
    c.started_at = kT0 - 61000;
    c.finished_at = kT0 - 500;  // up 60.5 s: the streak is forgotten
    f.in.containers = {c};
    f.in.replicas = {st};
    PlanOutput out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].failures == 1);
    CHECK(out.status_updates[0].next_retry == c.finished_at + 1000);

    c.started_at = kT0 - 10000;  // up 9.5 s: the streak goes on, 4th failure waits 8 s
    f.in.containers = {c};
    out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].failures == 4);
    CHECK(out.status_updates[0].next_retry == c.finished_at + 8000);
  }

  TEST_CASE("OnFailure does not restart a clean exit, Never restarts nothing") {
    for (auto [policy, code] :
         {std::pair{RestartPolicy::kOnFailure, 0}, std::pair{RestartPolicy::kNever, 1}}) {
      Fixture f;
      WorkloadSpec s = Spec("job", 1);
      s.restart_policy = policy;
      f.Want(s);
      ContainerInfo c = Container("c1", "job", 0, f.Hash(0), ContainerState::kExited);
      c.exit_code = code;
      c.finished_at = kT0 - 10;
      f.in.containers = {c};
      f.in.replicas = {Running("job", 0, "c1", f.Hash(0))};
      PlanOutput out = f.Run();
      CHECK(out.actions.empty());
      REQUIRE(out.status_updates.size() == 1);
      CHECK(out.status_updates[0].phase == Phase::kExited);
      CHECK(out.status_updates[0].last_exit_code == code);
      CHECK(out.next_wakeup == kNever);

      // The finished container vanishing later does not bring the job back.
      f.in.replicas = {out.status_updates[0]};
      f.in.containers.clear();
      out = f.Run();
      CHECK(out.actions.empty());
      CHECK(out.status_updates.empty());
    }
  }

  TEST_CASE("a finished replica restarts when its policy changes to one that restarts it") {
    Fixture f;
    WorkloadSpec s = Spec("job", 1);
    s.restart_policy = RestartPolicy::kNever;
    f.Want(s);
    ContainerInfo c = Container("c1", "job", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 1;
    c.finished_at = kT0 - 10;
    f.in.containers = {c};
    f.in.replicas = {Running("job", 0, "c1", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    ReplicaStatus exited = out.status_updates[0];
    REQUIRE(exited.phase == Phase::kExited);

    f.specs[0].restart_policy = RestartPolicy::kAlways;  // same template hash
    f.in.replicas = {exited};
    out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kCrashLoop);
    CHECK(out.status_updates[0].failures == 1);

    // Also when its container is gone already.
    f.in.containers.clear();
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);

    // OnFailure leaves a clean exit alone.
    exited.last_exit_code = 0;
    f.in.replicas = {exited};
    f.specs[0].restart_policy = RestartPolicy::kOnFailure;
    out = f.Run();
    CHECK(out.actions.empty());
  }

  TEST_CASE("OnFailure restarts a failed exit") {
    Fixture f;
    WorkloadSpec s = Spec("job", 1);
    s.restart_policy = RestartPolicy::kOnFailure;
    f.Want(s);
    ContainerInfo c = Container("c1", "job", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 2;
    c.finished_at = kT0;
    f.in.containers = {c};
    f.in.replicas = {Running("job", 0, "c1", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kCrashLoop);
  }

  TEST_CASE("an OOM kill is told as OOMKilled in the replica's message and its event") {
    Fixture f;
    f.Want(Spec("hog", 1));
    ContainerInfo c = Container("c1", "hog", 0, f.Hash(0), ContainerState::kExited);
    c.exit_code = 137;
    c.exit_reason = "OOMKilled";
    c.finished_at = kT0;
    f.in.containers = {c};
    f.in.replicas = {Running("hog", 0, "c1", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].message ==
          "exited: OOMKilled: over its memory limit, killed by signal 9 (exit code 137); "
          "back-off 1s");
    REQUIRE(out.events.size() == 1);
    CHECK(out.events[0].message.rfind("OOMKilled: over its memory limit", 0) == 0);
  }

  TEST_CASE("a failed startup probe stops the container, and its exit says which probe") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.containers = {Container("c1", "web", 0, f.Hash(0), ContainerState::kRunning)};
    f.in.replicas = {Running("web", 0, "c1", f.Hash(0))};
    f.in.unhealthy["c1"] = {"startup", "startup probe failed 3 times in a row: HTTP 500"};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kKill);
    CHECK(out.actions[0].signal == SIGTERM);
    CHECK(out.actions[0].reason.rfind("startup probe failed: SIGTERM", 0) == 0);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].message == "startup probe failed 3 times in a row: HTTP 500");

    f.in.replicas = {out.status_updates[0]};
    f.in.kills["c1"] = KillState{kT0, false};
    f.in.containers[0].state = ContainerState::kExited;
    f.in.containers[0].exit_code = 143;
    f.in.containers[0].finished_at = kT0;
    out = f.Run();
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].message ==
          "exited: killed by signal 15 (exit code 143) after its startup probe failed; "
          "back-off 1s");
  }

  TEST_CASE("scaling down stops the extra replica: SIGTERM, SIGKILL after grace, remove") {
    Fixture f;
    WorkloadSpec s = Spec("web", 1);
    s.termination_grace_ms = 3000;
    f.Want(s);
    f.in.containers = {Container("c0", "web", 0, f.Hash(0), ContainerState::kRunning),
                       Container("c1", "web", 1, f.Hash(0), ContainerState::kRunning)};
    f.in.replicas = {Running("web", 0, "c0", f.Hash(0)), Running("web", 1, "c1", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kKill);
    CHECK(out.actions[0].signal == SIGTERM);
    CHECK(out.actions[0].container_id == "c1");
    CHECK(out.next_wakeup == kT0 + 3000);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].index == 1);
    CHECK(out.status_updates[0].phase == Phase::kStopping);

    f.in.replicas[1] = out.status_updates[0];
    f.in.kills["c1"] = KillState{kT0, false};
    f.in.now = kT0 + 2999;
    out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.next_wakeup == kT0 + 3000);

    f.in.now = kT0 + 3000;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].signal == SIGKILL);

    f.in.kills["c1"].kill_sent = true;
    f.in.containers[1].state = ContainerState::kExited;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);

    f.in.containers.pop_back();
    out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.status_deletes.size() == 1);
    CHECK(out.status_deletes[0] == std::pair<std::string, int>("web", 1));
  }

  TEST_CASE("a warm standby is created but not started and held in phase Standby") {
    Fixture f;
    WorkloadSpec s = Spec("web", 0);
    s.standby_replicas = 1;
    f.Want(s);
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);
    CHECK_FALSE(out.actions[0].start);
    CHECK(out.actions[0].replica == 0);
    CHECK(out.actions[0].container.name == ContainerName("n1", "web", 0));
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kCreating);

    f.in.replicas = {out.status_updates[0]};
    f.in.containers = {Container("c0", "web", 0, f.Hash(0), ContainerState::kCreated)};
    out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kStandby);
    CHECK(out.status_updates[0].container_id == "c0");

    // Held: nothing more to do.
    f.in.replicas = {out.status_updates[0]};
    out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.status_updates.empty());
    CHECK(out.status_deletes.empty());

    // Scaled up onto it: only a start of the container already there.
    f.specs[0].replicas = 1;
    f.specs[0].standby_replicas = 0;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kStart);
    CHECK(out.actions[0].container_id == "c0");
    CHECK(out.actions[0].reason == "starting the warm standby");
  }

  TEST_CASE("a standby waits for its image like a replica and pulls it ahead of time") {
    Fixture f;
    f.images_ready = false;
    WorkloadSpec s = Spec("web", 0);
    s.standby_replicas = 1;
    f.Want(s);
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    REQUIRE(out.pulls.size() == 1);
    CHECK(out.pulls[0].image == s.image);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kPulling);
  }

  TEST_CASE("a running or exited container in a standby's slot is stopped and replaced") {
    Fixture f;
    WorkloadSpec s = Spec("web", 0);
    s.standby_replicas = 1;
    s.termination_grace_ms = 0;
    f.Want(s);
    f.in.containers = {Container("c0", "web", 0, f.Hash(0), ContainerState::kRunning)};
    f.in.replicas = {Running("web", 0, "c0", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kKill);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kStopping);

    f.in.replicas = {out.status_updates[0]};
    f.in.containers[0].state = ContainerState::kExited;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);

    f.in.containers.clear();
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);
    CHECK_FALSE(out.actions[0].start);
  }

  TEST_CASE("a standby of an older template is replaced - dropping the standby removes it") {
    Fixture f;
    WorkloadSpec s = Spec("web", 1);
    s.standby_replicas = 1;
    f.Want(s);
    f.in.containers = {Container("c0", "web", 0, f.Hash(0), ContainerState::kRunning),
                       Container("c1", "web", 1, "h-old", ContainerState::kCreated)};
    f.in.replicas = {Running("web", 0, "c0", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.actions[0].container_id == "c1");

    f.in.containers[1].labels[kLabelSpecHash] = f.Hash(0);
    f.specs[0].standby_replicas = 0;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.actions[0].container_id == "c1");
  }

  TEST_CASE("a removal that failed waits for its retry time - also for a deleted workload") {
    Fixture f;
    f.in.containers = {Container("c0", "gone", 0, "h-x", ContainerState::kExited)};
    f.in.terminating = {"gone"};
    f.in.removes["c0"] = RemoveState{3, kT0 + 4000};
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.next_wakeup == kT0 + 4000);  // not now: no tight loop of failures
    CHECK(out.gone.empty());
    f.in.now = kT0 + 4000;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(RemoveRetryDelayMs(1) == 1000);
    CHECK(RemoveRetryDelayMs(3) == 4000);
    CHECK(RemoveRetryDelayMs(10) == 30000);
  }

  TEST_CASE("a changed spec stops the old container before the new one is created") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.containers = {Container("c0", "web", 0, "old-hash", ContainerState::kRunning)};
    f.in.replicas = {Running("web", 0, "c0", "old-hash")};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kKill);
    CHECK(out.actions[0].reason.find("spec changed") == 0);
    REQUIRE(out.status_updates.size() == 1);
    CHECK(out.status_updates[0].phase == Phase::kStopping);

    f.in.containers[0].state = ContainerState::kExited;
    f.in.kills["c0"] = KillState{kT0, false};
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);

    f.in.containers.clear();
    f.in.replicas = {out.status_updates.empty() ? f.in.replicas[0] : out.status_updates[0]};
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);
    CHECK(out.actions[0].container.labels.at(kLabelSpecHash) == f.Hash(0));
  }

  TEST_CASE("containers of deleted workloads and unknown leftovers are stopped") {
    Fixture f;
    f.in.containers = {Container("c0", "gone", 0, "h", ContainerState::kRunning),
                       Container("c1", "gone", 1, "h", ContainerState::kExited)};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 2);
    int kills = 0, removes = 0;
    for (const Action& a : out.actions) {
      kills += a.type == Action::Type::kKill && a.container_id == "c0";
      removes += a.type == Action::Type::kRemove && a.container_id == "c1";
    }
    CHECK(kills == 1);
    CHECK(removes == 1);
    CHECK(out.next_wakeup == kT0 + kDefaultGraceMs);

    // The grace period the container was created with outlives the workload's spec.
    f.in.containers[0].labels[kLabelStopGrace] = "2500";
    out = f.Run();
    CHECK(out.next_wakeup == kT0 + 2500);
  }

  TEST_CASE("a Terminating workload is gone once no container of it is left") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.terminating = {"gone", "empty"};
    f.in.containers = {Container("c0", "gone", 0, "h", ContainerState::kRunning),
                       Container("w0", "web", 0, f.Hash(0), ContainerState::kExited)};
    f.in.replicas = {Running("gone", 0, "c0", "h")};
    PlanOutput out = f.Run();
    CHECK(out.gone == std::vector<std::string>{"empty"});
    // Still running: SIGTERM and a wake-up at the end of the grace period only (the
    // exited container of a wanted workload asks for nothing sooner).
    CHECK(out.next_wakeup == kT0 + 1000);  // web's back-off

    // Exited: removed in this pass, and the next pass comes at once to find it gone.
    f.in.containers[0].state = ContainerState::kExited;
    f.in.containers.pop_back();
    out = f.Run();
    REQUIRE(out.actions.size() >= 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.next_wakeup == kT0);
    CHECK(out.gone == std::vector<std::string>{"empty"});

    f.in.containers.clear();
    out = f.Run();
    CHECK(out.gone == std::vector<std::string>{"gone", "empty"});
    CHECK(out.status_deletes == std::vector<std::pair<std::string, int>>{{"gone", 0}});
  }

  TEST_CASE("a Terminating workload with a job in flight is not gone before the job ends") {
    Fixture f;
    f.in.terminating = {"gone"};
    f.in.busy = {{"gone", 0}};  // a Create under way: its container is not listed yet
    PlanOutput out = f.Run();
    CHECK(out.gone.empty());
    f.in.busy.clear();
    out = f.Run();
    CHECK(out.gone == std::vector<std::string>{"gone"});
  }

  TEST_CASE("a duplicate of the same template is removed, the running one kept") {
    Fixture f;
    f.Want(Spec("web", 1));
    ContainerInfo a = Container("c-a", "web", 0, f.Hash(0), ContainerState::kExited);
    ContainerInfo b = Container("c-b", "web", 0, f.Hash(0), ContainerState::kRunning);
    f.in.containers = {a, b};
    f.in.replicas = {Running("web", 0, "c-b", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kRemove);
    CHECK(out.actions[0].container_id == "c-a");
  }

  TEST_CASE("a container removed behind petrel's back is recreated") {
    Fixture f;
    f.Want(Spec("web", 1));
    f.in.replicas = {Running("web", 0, "c0", f.Hash(0))};
    PlanOutput out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);
    CHECK(out.actions[0].reason.find("disappeared") != std::string::npos);
  }

  TEST_CASE("a failed create waits for its back-off") {
    Fixture f;
    f.Want(Spec("web", 1));
    ReplicaStatus st;
    st.workload = "web";
    st.phase = Phase::kCrashLoop;
    st.failures = 1;
    st.next_retry = kT0 + 1000;
    st.spec_hash = f.Hash(0);
    f.in.replicas = {st};
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
    CHECK(out.next_wakeup == kT0 + 1000);
    f.in.now = kT0 + 1000;
    out = f.Run();
    REQUIRE(out.actions.size() == 1);
    CHECK(out.actions[0].type == Action::Type::kCreate);
  }

  TEST_CASE("containers without petrel's labels are left alone") {
    Fixture f;
    ContainerInfo c;
    c.id = "foreign";
    c.labels = {
        {kLabelNode, "n1"}, {kLabelReplica, "x"}, {kLabelWorkload, "w"}, {kLabelSpecHash, "h"}};
    f.in.containers = {c};
    PlanOutput out = f.Run();
    CHECK(out.actions.empty());
  }
}

}  // namespace
}  // namespace petrel::internal
