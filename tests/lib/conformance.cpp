#include "tests/lib/conformance.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "tests/lib/doctest_main.h"
#include "tests/lib/images.h"
#include "tests/lib/wait.h"

namespace petrel::testing {
namespace {

const ConformanceTarget* g_target = nullptr;

// `s` as one word of sh: in single quotes, each ' written as '\''.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string Line(const std::string& text) { return "printf '%s\\n' " + Quote(text); }

// A variable name as sh takes it after $; anything else would be code.
bool IsShellName(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string ShellStep(const Step& s) {
  using V = Step::Verb;
  const std::string n = std::to_string(s.number);
  switch (s.verb) {
    case V::kPrint: return Line(s.text);
    case V::kPrintErr: return Line(s.text) + " >&2";
    case V::kEnv:
      if (!IsShellName(s.path)) std::abort();  // the suite's own names only
      return "printf '%s=%s\\n' " + Quote(s.path) + " \"$" + s.path + "\"";
    case V::kCwd: return "pwd";
    case V::kUid: return "id -u";
    case V::kHostname: return "hostname";
    case V::kCat: return "cat " + Quote(s.path);
    case V::kWrite: return Line(s.text) + " > " + Quote(s.path);
    case V::kCount:
      return "i=0; while [ $i -lt " + n + " ]; do printf '%019d\\n' $i; i=$((i+1)); done";
    // A child OOM-killed ends the container too, as the step promises.
    case V::kAlloc:
      return "dd if=/dev/zero of=/dev/null bs=" + n + "M count=1 2>/dev/null || exit $?";
    case V::kTrapTerm:
      return "trap " + Quote((s.text.empty() ? "" : Line(s.text) + "; ") + "exit " + n) + " TERM";
    case V::kIgnoreTerm: return "trap '' TERM";
    // Short sleeps: sh runs a trap only between commands.
    case V::kRun: return "while :; do sleep 0.1; done";
    case V::kExit: return "exit " + n;
    case V::kSleep: {
      char seconds[32];
      std::snprintf(seconds, sizeof(seconds), "%lld.%03lld",
                    static_cast<long long>(s.number / 1000),
                    static_cast<long long>(s.number % 1000));
      return std::string("sleep ") + seconds;
    }
  }
  std::abort();
}

}  // namespace

ContainerCommand ShellCommand(const Program& program) {
  std::string script;
  for (const Step& s : program) script += (script.empty() ? "" : "\n") + ShellStep(s);
  return {{"/bin/sh", "-c"}, {script}};
}

ContainerCommand FakeCommand(const Program& program) {
  return {{kFakeProgram}, FakeProgramWords(program)};
}

std::string BusyboxImageOrFail() {
  Result<std::string> image = BusyboxImage();
  REQUIRE_MESSAGE(image.ok(), image.status().ToString());
  return *image;
}

int RunRuntimeConformance(int argc, char** argv, const ConformanceTarget& target) {
  g_target = &target;
  const int rc = RunDoctest(argc, argv);
  g_target = nullptr;
  return rc;
}

const ConformanceTarget& CurrentTarget() {
  if (g_target == nullptr) std::abort();
  return *g_target;
}

std::string Create(ContainerRuntime* rt, const ContainerSpec& spec) {
  Result<std::string> id = rt->Create(spec);
  REQUIRE_MESSAGE(id.ok(), id.status().ToString());
  return *id;
}

std::string CreateAndStart(ContainerRuntime* rt, const ContainerSpec& spec) {
  const std::string id = Create(rt, spec);
  Status s = rt->Start(id);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return id;
}

bool HasExited(ContainerRuntime* rt, const std::string& id) {
  Result<ContainerInfo> info = rt->Inspect(id);
  return info.ok() && info->state == ContainerState::kExited;
}

int WaitExit(ContainerRuntime* rt, const std::string& id) {
  REQUIRE_MESSAGE(WaitFor([&] { return HasExited(rt, id); }), "container " << id << " runs on");
  return rt->Inspect(id)->exit_code;
}

std::string LogOf(ContainerRuntime* rt, const std::string& id) {
  Result<LogChunk> chunk = rt->Logs(id, LogOptions{0, 1 << 20});
  REQUIRE_MESSAGE(chunk.ok(), chunk.status().ToString());
  return chunk->data;
}

void CheckGone(ContainerRuntime* rt, const std::string& state_dir, const std::string& id) {
  CAPTURE(id);
  CHECK(rt->Inspect(id).status().IsNotFound());
  CHECK(rt->Logs(id, {}).status().IsNotFound());
  Result<std::vector<ContainerInfo>> all = rt->List({});
  REQUIRE(all.ok());
  for (const ContainerInfo& c : *all) CHECK(c.id != id);
  std::string left;
  for (const std::string& thing : CurrentTarget().leftovers(rt, state_dir, id)) {
    left += "\n  " + thing;
  }
  CHECK_MESSAGE(left.empty(), "left behind:" << left);
}

void RemoveAndCheck(ContainerRuntime* rt, const std::string& state_dir, const std::string& id) {
  Status s = rt->Remove(id);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CheckGone(rt, state_dir, id);
}

}  // namespace petrel::testing
