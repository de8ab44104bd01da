// petrelctl: the command line of petreld, kubectl-style.
//
//   petrelctl [--socket PATH] COMMAND [ARGS] [FLAGS]
//
// Talks HTTP to petreld over its Unix socket (examples/petreld/API.md). Manifests are
// parsed and checked here, with the library, before anything is sent, so an error
// names file, line and field and nothing is applied. Exit status: 0 done, 1 failed
// (one line on stderr), 2 the command line is wrong.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "flags.h"
#include "format.h"
#include "http_client.h"
#include "petrel/manifest.h"
#include "petrel/spec.h"

namespace petrelctl {
namespace {

using petrel::Status;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr const char* kDefaultSocket = "/run/petrel/petrel.sock";
constexpr int64_t kEventPage = 1000;    // events asked for per request
constexpr size_t kDescribeEvents = 20;  // the last events `describe` shows

struct Command {
  std::string name;
  std::string synopsis;  // after "petrelctl "
  std::string summary;   // one line, for the command list
  std::string details;   // what it does and prints
  std::string examples;
  std::vector<FlagDef> flags;
  int (*run)(Client& client, const ParsedArgs& args, const Command& self);
};

const std::vector<FlagDef>& GlobalFlags() {
  static const std::vector<FlagDef> flags = {
      {"socket", 0, "PATH",
       "petreld's socket (default: $PETREL_SOCKET, else /run/petrel/petrel.sock)"},
      {"help", 'h', "", "show help"},
  };
  return flags;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "petrelctl: %s\n", s.message().c_str());
  return kExitError;
}

int UsageError(const Command* cmd, const std::string& what) {
  if (cmd == nullptr) {
    std::fprintf(stderr, "petrelctl: %s (see 'petrelctl --help')\n", what.c_str());
  } else {
    std::fprintf(stderr, "petrelctl %s: %s (see 'petrelctl help %s')\n", cmd->name.c_str(),
                 what.c_str(), cmd->name.c_str());
  }
  return kExitUsage;
}

// Writes to stdout at once (for streams); a closed or full stdout ends the command.
Status WriteOut(std::string_view text) {
  if (text.empty()) return Status::OK();
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    return Status::IOError(std::string("write to stdout: ") + std::strerror(errno));
  }
  return Status::OK();
}

void Print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

petrel::TimeMs NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

bool IsWorkloadType(const std::string& type) {
  return type == "workload" || type == "workloads" || type == "wl";
}

bool IsNodeType(const std::string& type) {
  return type == "node" || type == "nodes" || type == "no";
}

bool IsImageType(const std::string& type) { return type == "image" || type == "images"; }

constexpr const char kTypes[] = "(petrelctl has workloads, nodes and images)";

// GETs `target` and decodes the JSON answer with `decode`.
template <typename Decode>
auto Fetch(Client& client, const std::string& target, Decode decode)
    -> decltype(decode(std::declval<const json&>())) {
  PETREL_ASSIGN_OR_RETURN(const std::string body, client.Call("GET", target));
  auto j = ParseJson(body);
  if (!j.ok()) return j.status().WithContext("unexpected answer from petreld to GET " + target);
  auto decoded = decode(*j);
  if (!decoded.ok()) {
    return decoded.status().WithContext("unexpected answer from petreld to GET " + target);
  }
  return decoded;
}

// A decoder for Fetch that checks the answer with `decode` and keeps it as it is.
template <typename Decode>
auto Checked(Decode decode) {
  return [decode](const json& j) -> petrel::Result<json> {
    PETREL_RETURN_IF_ERROR(decode(j).status());
    return j;
  };
}

// Every event (of `workload`, when not empty), oldest first, paging through the
// event log; only the last `keep_last` when that is not 0. With `raw`, also the
// server's own objects.
Status ListEvents(Client& client, const std::string& workload, size_t keep_last,
                  std::vector<EventView>* events, std::vector<json>* raw) {
  int64_t after = 0;
  for (;;) {
    std::string target =
        "/v1/events?after=" + std::to_string(after) + "&limit=" + std::to_string(kEventPage);
    if (!workload.empty()) target += "&workload=" + UrlEscape(workload);
    PETREL_ASSIGN_OR_RETURN(const json page, Fetch(client, target, Checked(DecodeEventList)));
    const json& items = page.at("items");  // there: DecodeEventList checked
    for (const json& item : items) {
      events->push_back(DecodeEvent(item).value());
      if (raw != nullptr) raw->push_back(item);
    }
    if (keep_last != 0 && events->size() > keep_last) {
      size_t drop = events->size() - keep_last;
      events->erase(events->begin(), events->begin() + static_cast<std::ptrdiff_t>(drop));
      if (raw != nullptr) {
        raw->erase(raw->begin(), raw->begin() + static_cast<std::ptrdiff_t>(drop));
      }
    }
    // A short page is the last; a server that ignores `after` must not loop us forever.
    if (items.size() < static_cast<size_t>(kEventPage) || events->empty() ||
        events->back().seq <= after) {
      return Status::OK();
    }
    after = events->back().seq;
  }
}

// --- apply ---

void FollowPulls(Client& client, const std::set<std::string>& names, bool lines);

int RunApply(Client& client, const ParsedArgs& args, const Command& self) {
  std::vector<std::string> files = args.All("filename");
  if (files.empty()) return UsageError(&self, "missing -f FILE|DIR");
  const std::string progress = args.Last("progress", "auto");
  if (progress != "auto" && progress != "plain" && progress != "none") {
    return UsageError(&self, "--progress: \"" + progress + "\" is not auto, plain or none");
  }
  if (!args.positional.empty()) {
    return UsageError(&self, "unexpected argument \"" + args.positional[0] + "\"");
  }
  std::vector<petrel::WorkloadSpec> specs;
  std::map<std::string, std::string> defined_in;  // workload name -> the -f that has it
  for (const std::string& file : files) {
    auto loaded = petrel::LoadManifests(file);
    if (!loaded.ok()) return Fail(loaded.status());
    if (loaded->empty()) return Fail(Status::InvalidArgument(file + ": no workloads in it"));
    for (petrel::WorkloadSpec& spec : *loaded) {
      auto [it, inserted] = defined_in.emplace(spec.name, file);
      if (!inserted) {
        return Fail(Status::InvalidArgument(file + ": duplicate workload name \"" + spec.name +
                                            "\" (first in " + it->second + ")"));
      }
      specs.push_back(std::move(spec));
    }
  }
  std::string body = "{\"items\":[";
  for (size_t i = 0; i < specs.size(); i++) body += (i ? "," : "") + petrel::SpecToJson(specs[i]);
  body += "]}";
  auto answer = client.Call("PUT", "/v1/workloads", body);
  if (!answer.ok()) return Fail(answer.status());
  auto j = ParseJson(*answer);
  auto results = j.ok() ? DecodeApplyResults(*j) : j.status();
  if (!results.ok()) {
    return Fail(
        results.status().WithContext("unexpected answer from petreld to PUT /v1/workloads"));
  }
  std::set<std::string> changed;
  for (const ApplyResultView& r : *results) {
    Print("workload.petrel/" + r.name + " " + r.outcome + "\n");
    if (r.outcome != "unchanged") changed.insert(r.name);
  }
  const bool tty = isatty(STDERR_FILENO) == 1;
  if (!changed.empty() && (progress == "plain" || (progress == "auto" && tty))) {
    std::fflush(stdout);  // the result lines first, also through a pipe
    FollowPulls(client, changed, progress == "plain");
  }
  return 0;
}

// --- get ---

// `get nodes [NAME]`: the table, or -o json the server's NODE objects as they are.
int GetNodes(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  std::string output = args.Last("output");
  if (output != "" && output != "json") {
    return UsageError(&self, "unknown output format \"" + output + "\" for nodes (json)");
  }
  std::vector<NodeView> nodes;
  json items = json::array();
  if (pos.size() == 2) {
    auto node = Fetch(client, "/v1/nodes/" + UrlEscape(pos[1]), Checked(DecodeNode));
    if (!node.ok()) return Fail(node.status());
    nodes.push_back(DecodeNode(*node).value());
    items.push_back(std::move(*node));
  } else {
    auto list = Fetch(client, "/v1/nodes", Checked(DecodeNodeList));
    if (!list.ok()) return Fail(list.status());
    nodes = DecodeNodeList(*list).value();
    items = std::move(list->at("items"));
  }
  if (output == "json") {
    Print(PrettyJson(json{{"items", std::move(items)}}) + "\n");
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {NodeHeader()};
  petrel::TimeMs now = NowMs();
  for (const NodeView& n : nodes) rows.push_back(NodeRow(n, now));
  Print(FormatTable(rows));
  return 0;
}

// `get images`: the table, or -o json petreld's {"items":[IMAGE...]} as it is.
int GetImages(Client& client, const ParsedArgs& args, const Command& self) {
  if (args.positional.size() > 1) {
    return UsageError(&self, "unexpected argument \"" + args.positional[1] + "\"");
  }
  std::string output = args.Last("output");
  if (output != "" && output != "json") {
    return UsageError(&self, "unknown output format \"" + output + "\" for images (json)");
  }
  auto list = Fetch(client, "/v1/images", Checked(DecodeImageList));
  if (!list.ok()) return Fail(list.status());
  if (output == "json") {
    Print(PrettyJson(*list) + "\n");
    return 0;
  }
  std::vector<ImageView> images = DecodeImageList(*list).value();
  if (images.empty()) {
    std::fprintf(stderr, "No images found.\n");
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {ImageHeader()};
  petrel::TimeMs now = NowMs();
  for (const ImageView& i : images) rows.push_back(ImageRow(i, now));
  Print(FormatTable(rows));
  return 0;
}

int RunGet(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty()) {
    return UsageError(&self, "missing the resource type (workloads, nodes or images)");
  }
  if (IsImageType(pos[0])) return GetImages(client, args, self);
  if (!IsWorkloadType(pos[0]) && !IsNodeType(pos[0])) {
    return UsageError(&self, "unknown resource type \"" + pos[0] + "\" " + kTypes);
  }
  if (pos.size() > 2) return UsageError(&self, "unexpected argument \"" + pos[2] + "\"");
  if (IsNodeType(pos[0])) return GetNodes(client, args, self);
  std::string output = args.Last("output");
  if (output != "" && output != "json" && output != "wide") {
    return UsageError(&self, "unknown output format \"" + output + "\" (json or wide)");
  }
  std::vector<WorkloadView> workloads;
  if (pos.size() == 2) {
    auto w = Fetch(client, "/v1/workloads/" + UrlEscape(pos[1]), DecodeWorkload);
    if (!w.ok()) return Fail(w.status());
    workloads.push_back(std::move(*w));
  } else {
    auto list = Fetch(client, "/v1/workloads", DecodeWorkloadList);
    if (!list.ok()) return Fail(list.status());
    workloads = std::move(*list);
  }
  if (output == "json") {
    Print(PrettyJson(StableJson(workloads)) + "\n");
    return 0;
  }
  if (workloads.empty()) {
    std::fprintf(stderr, "No workloads found.\n");
    return 0;
  }
  bool wide = output == "wide";
  std::vector<std::vector<std::string>> rows = {WorkloadHeader(wide)};
  petrel::TimeMs now = NowMs();
  for (const WorkloadView& w : workloads) rows.push_back(WorkloadRow(w, now, wide));
  Print(FormatTable(rows));
  return 0;
}

// --- describe ---

int RunDescribe(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty()) return UsageError(&self, "missing the resource type (workload or node)");
  if (!IsWorkloadType(pos[0]) && !IsNodeType(pos[0])) {
    return UsageError(&self, "unknown resource type \"" + pos[0] + "\" " + kTypes);
  }
  const char* kind = IsNodeType(pos[0]) ? "node" : "workload";
  if (pos.size() < 2) return UsageError(&self, std::string("missing the ") + kind + "'s NAME");
  if (pos.size() > 2) return UsageError(&self, "unexpected argument \"" + pos[2] + "\"");
  const std::string& name = pos[1];
  if (IsNodeType(pos[0])) {
    auto node = Fetch(client, "/v1/nodes/" + UrlEscape(name), DecodeNode);
    if (!node.ok()) return Fail(node.status());
    auto workloads = Fetch(client, "/v1/workloads", DecodeWorkloadList);
    if (!workloads.ok()) return Fail(workloads.status());
    Print(DescribeNodeText(*node, *workloads, NowMs()));
    return 0;
  }
  auto w = Fetch(client, "/v1/workloads/" + UrlEscape(name), DecodeWorkload);
  if (!w.ok()) return Fail(w.status());
  auto spec = petrel::SpecFromJson(w->spec.dump(-1, ' ', false, json::error_handler_t::replace));
  if (!spec.ok()) {
    return Fail(spec.status().WithContext("unexpected answer from petreld: workload " + name));
  }
  std::vector<EventView> events;
  if (Status s = ListEvents(client, name, kDescribeEvents, &events, nullptr); !s.ok()) {
    return Fail(s);
  }
  Print(DescribeText(*w, *spec, events, NowMs()));
  return 0;
}

// --- delete ---

int RunDelete(Client& client, const ParsedArgs& args, const Command& self) {
  std::vector<std::string> files = args.All("filename");
  const auto& pos = args.positional;
  std::vector<std::string> names;
  if (!files.empty()) {
    if (!pos.empty()) {
      return UsageError(&self, "give either -f FILE|DIR or workload NAME, not both");
    }
    std::set<std::string> seen;
    for (const std::string& file : files) {
      auto loaded = petrel::LoadManifests(file);
      if (!loaded.ok()) return Fail(loaded.status());
      for (const petrel::WorkloadSpec& spec : *loaded) {
        if (seen.insert(spec.name).second) names.push_back(spec.name);
      }
    }
  } else {
    if (pos.empty()) return UsageError(&self, "missing workload NAME or -f FILE|DIR");
    if (IsNodeType(pos[0])) {
      return UsageError(&self, "nodes are removed with 'petrelctl cluster remove NODE'");
    }
    if (IsImageType(pos[0])) {
      if (pos.size() < 2) return UsageError(&self, "missing the image's REF");
      int rc = 0;
      for (size_t i = 1; i < pos.size(); i++) {
        auto answer = client.Call("DELETE", "/v1/images/" + UrlEscape(pos[i]));
        if (!answer.ok()) {
          rc = Fail(answer.status());
          continue;
        }
        Print("image.petrel/" + pos[i] + " deleted\n");
        std::fflush(stdout);
      }
      return rc;
    }
    if (!IsWorkloadType(pos[0])) {
      return UsageError(&self, "unknown resource type \"" + pos[0] + "\" " + kTypes);
    }
    if (pos.size() < 2) return UsageError(&self, "missing the workload's NAME");
    names.assign(pos.begin() + 1, pos.end());
  }
  int rc = 0;
  for (const std::string& name : names) {
    auto answer = client.Call("DELETE", "/v1/workloads/" + UrlEscape(name));
    if (!answer.ok()) {
      rc = Fail(answer.status());
      continue;
    }
    Print("workload.petrel/" + name + " deleted\n");
    std::fflush(stdout);  // in order with the errors of the names after it
  }
  return rc;
}

// --- logs ---

int RunLogs(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty()) return UsageError(&self, "missing the workload's NAME");
  if (pos.size() > 1) return UsageError(&self, "unexpected argument \"" + pos[1] + "\"");
  std::string replica = args.Last("replica", "0");
  if (replica.empty() || replica.size() > 9 ||
      replica.find_first_not_of("0123456789") != std::string::npos) {
    return UsageError(&self, "--replica: \"" + replica + "\" is not a replica index");
  }
  std::string target = "/v1/workloads/" + UrlEscape(pos[0]) + "/logs?replica=" + replica;
  if (args.Has("tail")) {
    auto tail = petrel::ParseBytes(args.Last("tail"));
    if (!tail.ok()) return UsageError(&self, "--tail: " + tail.status().message());
    target += "&tail=" + std::to_string(*tail);
  }
  if (args.Has("follow")) target += "&follow=1";
  if (Status s = client.Stream(target, WriteOut); !s.ok()) return Fail(s);
  return 0;
}

// --- events ---

int RunEvents(Client& client, const ParsedArgs& args, const Command& self) {
  if (!args.positional.empty()) {
    return UsageError(&self, "unexpected argument \"" + args.positional[0] + "\"");
  }
  std::string output = args.Last("output");
  if (output != "" && output != "json") {
    return UsageError(&self, "unknown output format \"" + output + "\" (json)");
  }
  std::string workload = args.Last("workload");
  std::string filter = workload.empty() ? "" : "&workload=" + UrlEscape(workload);
  bool follow = args.Has("follow");

  if (output == "json" && follow) {  // the server's NDJSON lines, as they come
    Status s = client.Stream("/v1/events?follow=1&after=0" + filter, WriteOut);
    return s.ok() ? 0 : Fail(s);
  }
  std::vector<EventView> events;
  std::vector<json> raw;
  if (Status s = ListEvents(client, workload, 0, &events, &raw); !s.ok()) return Fail(s);
  if (output == "json") {
    Print(PrettyJson(json{{"items", std::move(raw)}}) + "\n");
    return 0;
  }
  if (events.empty() && !follow) {
    std::fprintf(stderr, "No events found.\n");
    return 0;
  }
  Columns columns;
  columns.Fit(EventHeader());
  // A followed log lines TIME up even when empty, and TYPE for every type petreld
  // writes, so that later rows rarely widen a column.
  columns.Fit({LocalTime(NowMs()), "", "", follow ? kWidestEventType : ""});
  for (const EventView& e : events) columns.Fit(EventRow(e));
  std::string table = columns.Format(EventHeader());
  for (const EventView& e : events) table += columns.Format(EventRow(e));
  if (Status s = WriteOut(table); !s.ok()) return Fail(s);
  if (!follow) return 0;

  // Then the new ones, one NDJSON line each, lined up with the rows above.
  int64_t after = events.empty() ? 0 : events.back().seq;
  std::string pending;
  auto sink = [&](std::string_view data) -> Status {
    pending.append(data);
    std::string rows;
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string line = pending.substr(start, nl - start);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = ParseJson(line);
      auto e = j.ok() ? DecodeEvent(*j) : j.status();
      if (!e.ok()) return e.status().WithContext("unexpected event line from petreld");
      rows += columns.Format(EventRow(*e));
    }
    pending.erase(0, start);
    if (pending.size() > (1 << 20)) {
      return Status::InvalidArgument("unexpected answer from petreld: an event line over 1 MiB");
    }
    return WriteOut(rows);
  };
  Status s = client.Stream("/v1/events?follow=1&after=" + std::to_string(after) + filter, sink);
  return s.ok() ? 0 : Fail(s);
}

// --- images ---

// Shows a pull's progress on stderr: a bar redrawn in place on a terminal, else a plain
// line at each change of phase and at most one a second in between.
class PullDisplay {
 public:
  // `lines`: plain lines even on a terminal.
  explicit PullDisplay(bool lines = false) : tty_(!lines && isatty(STDERR_FILENO) == 1) {}
  ~PullDisplay() { Finish(); }

  // `label`, when given, starts the text ("busybox:1.36: downloading ...").
  void Show(const petrel::PullProgress& p, const std::string& label = "") {
    const auto now = std::chrono::steady_clock::now();
    if (!started_ || p.bytes_done < first_bytes_) {
      started_ = true;
      first_ = now;
      first_bytes_ = p.bytes_done;
    }
    double secs = std::chrono::duration<double>(now - first_).count();
    double rate = secs >= 0.5 ? static_cast<double>(p.bytes_done - first_bytes_) / secs : 0;
    const std::string prefix = label.empty() ? "" : label + ": ";
    if (tty_) {
      std::string line = prefix + PullProgressText(p, rate, 24);
      std::fprintf(stderr, "\r%-*s", static_cast<int>(std::max(line.size(), drawn_)), line.c_str());
      drawn_ = line.size();
      std::fflush(stderr);
      return;
    }
    if (p.phase == phase_ && now - last_line_ < std::chrono::seconds(1)) return;
    phase_ = p.phase;
    last_line_ = now;
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), PullProgressText(p, rate, 0).c_str());
  }

  // Ends the bar's line.
  void Finish() {
    if (tty_ && drawn_ > 0) std::fputc('\n', stderr);
    drawn_ = 0;
  }

 private:
  bool tty_;
  bool started_ = false;
  std::chrono::steady_clock::time_point first_, last_line_;
  int64_t first_bytes_ = 0;
  std::string phase_;
  size_t drawn_ = 0;
};

// After an apply: while replicas of the workloads `names` wait for their images, shows
// the pulls' progress on stderr as `pull image` does (a bar on a terminal; with `lines`,
// or elsewhere, plain lines), the bytes and layers of every image being pulled summed.
// Returns once none is Pulling and none has been Pending for 2 s: each image arrived,
// or its pull failed (get and describe say why), or the replicas wait for something
// else. Polls GET /v1/workloads every 250 ms; a failed poll ends it quietly (the apply
// itself is done).
void FollowPulls(Client& client, const std::set<std::string>& names, bool lines) {
  PullDisplay display(lines);
  auto last_pull = std::chrono::steady_clock::now();
  for (;;) {
    auto list = Fetch(client, "/v1/workloads", Checked(DecodeWorkloadList));
    if (!list.ok()) return;
    std::map<std::string, petrel::PullProgress> images;  // by image
    bool pending = false;
    const std::vector<WorkloadView> workloads = DecodeWorkloadList(*list).value();
    for (const WorkloadView& w : workloads) {
      if (names.count(w.name) == 0) continue;
      for (const ReplicaView& r : w.replicas) {
        if (r.phase == "Pending") pending = true;
        if (r.phase != "Pulling") continue;
        petrel::PullProgress p;
        p.phase = "resolving";
        images.emplace(w.image, r.pull ? *r.pull : p);
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (!images.empty()) {
      last_pull = now;
      petrel::PullProgress sum = images.begin()->second;
      for (auto it = std::next(images.begin()); it != images.end(); ++it) {
        const petrel::PullProgress& p = it->second;
        if (p.phase == "downloading") sum.phase = p.phase;
        sum.bytes_done += p.bytes_done;
        sum.bytes_total += p.bytes_total;
        sum.layers_done += p.layers_done;
        sum.layers_total += p.layers_total;
      }
      display.Show(sum, images.size() == 1 ? images.begin()->first
                                           : std::to_string(images.size()) + " images");
    } else if (!pending || now - last_pull > std::chrono::seconds(2)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// POST /v1/images/pull for `ref`, showing the progress it streams; the result line
// gives the Status.
Status PullWithProgress(Client& client, const std::string& ref, const std::string& policy) {
  json body = {{"image", ref}};
  if (!policy.empty()) body["policy"] = policy;
  PullDisplay display;
  std::string pending;
  std::optional<Status> result;
  auto sink = [&](std::string_view data) -> Status {
    pending.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string line = pending.substr(start, nl - start);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      petrel::PullProgress progress;
      Status status;
      auto j = ParseJson(line);
      auto is_progress = j.ok() ? DecodePullLine(*j, &progress, &status) : j.status();
      if (!is_progress.ok()) {
        return is_progress.status().WithContext("unexpected pull line from petreld");
      }
      if (*is_progress) {
        display.Show(progress);
      } else {
        result = status;
      }
    }
    pending.erase(0, start);
    if (pending.size() > (1 << 20)) {
      return Status::InvalidArgument("unexpected answer from petreld: a pull line over 1 MiB");
    }
    return Status::OK();
  };
  Status s = client.Stream("POST", "/v1/images/pull", body.dump(), sink);
  display.Finish();
  if (!s.ok()) return s;
  if (!result) return Status::Unavailable("petreld ended the pull of " + ref + " without a result");
  return *result;
}

int RunPull(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty() || !IsImageType(pos[0])) return UsageError(&self, "usage: pull image REF");
  if (pos.size() < 2) return UsageError(&self, "missing the image's REF");
  if (pos.size() > 2) return UsageError(&self, "unexpected argument \"" + pos[2] + "\"");
  std::string policy = args.Last("policy");
  if (!policy.empty() && !petrel::ParsePullPolicy(policy)) {
    return UsageError(&self, "--policy: \"" + policy + "\" is not IfNotPresent, Always or Never");
  }
  if (Status s = PullWithProgress(client, pos[1], policy.empty() ? "Always" : policy); !s.ok()) {
    return Fail(s);
  }
  Print("image.petrel/" + pos[1] + " pulled\n");
  return 0;
}

// Which transport an image archive needs: an OCI layout has index.json at its top, a
// `docker save` archive manifest.json. Reads the tar's headers only.
petrel::Result<std::string> ArchiveTransport(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Status::NotFound(path + ": " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, std::fclose);
  char header[512];
  for (int entries = 0; entries < 100000; entries++) {
    if (std::fread(header, 1, sizeof header, f) != sizeof header) break;
    if (entries == 0 && static_cast<unsigned char>(header[0]) == 0x1f &&
        static_cast<unsigned char>(header[1]) == 0x8b) {
      return Status::InvalidArgument(path + ": a compressed archive; give the plain .tar");
    }
    if (header[0] == '\0') break;  // the end
    std::string name(header, strnlen(header, 100));
    if (name.compare(0, 2, "./") == 0) name.erase(0, 2);
    if (name == "index.json") return std::string("oci-archive:");
    if (name == "manifest.json") return std::string("docker-archive:");
    std::string size_field(header + 124, strnlen(header + 124, 12));
    char* end = nullptr;
    unsigned long long size = std::strtoull(size_field.c_str(), &end, 8);
    if (std::fseek(f, static_cast<long>((size + 511) / 512 * 512), SEEK_CUR) != 0) break;
  }
  return Status::InvalidArgument(path +
                                 ": not an image archive (a tar with index.json or manifest.json)");
}

int RunImport(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty() || !IsImageType(pos[0])) return UsageError(&self, "usage: import image FILE");
  if (pos.size() < 2) return UsageError(&self, "missing the archive FILE");
  if (pos.size() > 2) return UsageError(&self, "unexpected argument \"" + pos[2] + "\"");
  std::error_code ec;
  std::string path = std::filesystem::absolute(pos[1], ec).lexically_normal().string();
  if (ec) return Fail(Status::InvalidArgument(pos[1] + ": " + ec.message()));
  auto transport = ArchiveTransport(path);
  if (!transport.ok()) return Fail(transport.status());
  const std::string ref = *transport + path;
  if (Status s = PullWithProgress(client, ref, "Always"); !s.ok()) return Fail(s);
  Print("image.petrel/" + ref + " imported\n");
  return 0;
}

int RunPrune(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.size() != 1 || !IsImageType(pos[0])) return UsageError(&self, "usage: prune images");
  auto answer = client.Call("POST", "/v1/images/prune");
  if (!answer.ok()) return Fail(answer.status());
  auto j = ParseJson(*answer);
  if (!j.ok() || !j->is_object() || !j->contains("removed") || !(*j)["removed"].is_array() ||
      !j->contains("bytesFreed") || !(*j)["bytesFreed"].is_number_integer()) {
    return Fail(Status::InvalidArgument("unexpected answer from petreld to POST /v1/images/prune"));
  }
  for (const json& id : (*j)["removed"]) {
    if (id.is_string()) Print("deleted " + id.get<std::string>() + "\n");
  }
  Print("freed " + HumanBytes((*j)["bytesFreed"].get<int64_t>()) + "\n");
  return 0;
}

// --- cluster ---

// The flags of `cluster` and the subcommands each belongs to ("init|set").
const std::pair<const char*, const char*> kClusterFlags[] = {
    {"heartbeat", "init|set"},   {"node-lost-after", "init|set"},
    {"fence-after", "init|set"}, {"rotate", "token"},
    {"output", "status"},
};

// Whether `sub` is one of `owners` ("init|set").
bool OwnsFlag(const std::string& owners, const std::string& sub) {
  return ("|" + owners + "|").find("|" + sub + "|") != std::string::npos;
}

// "'cluster init' or 'cluster set'" for "init|set".
std::string OwnersText(const std::string& owners) {
  std::string out;
  for (size_t start = 0;;) {
    const size_t bar = owners.find('|', start);
    out += "'cluster " + owners.substr(start, bar - start) + "'";
    if (bar == std::string::npos) return out;
    out += " or ";
    start = bar + 1;
  }
}

// POSTs `body` (JSON) to `target` and returns the token of the {"token"} answer.
petrel::Result<std::string> PostForToken(Client& client, const std::string& target,
                                         const std::string& body) {
  PETREL_ASSIGN_OR_RETURN(const std::string answer, client.Call("POST", target, body));
  auto j = ParseJson(answer);
  auto token = j.ok() ? DecodeToken(*j) : j.status();
  if (!token.ok()) return token.status().WithContext("unexpected answer from petreld to " + target);
  return token;
}

// The body of init and set: {"heartbeat","nodeLostAfter","fenceAfter"}, only the keys
// whose flags are given. False (a usage error printed, into *exit) for a bad duration.
bool SettingsBody(const ParsedArgs& args, const Command& self, json* body, int* exit) {
  *body = json::object();
  const std::pair<const char*, const char*> durations[] = {{"heartbeat", "heartbeat"},
                                                           {"node-lost-after", "nodeLostAfter"},
                                                           {"fence-after", "fenceAfter"}};
  for (const auto& [flag, key] : durations) {
    if (!args.Has(flag)) continue;
    std::string value = args.Last(flag);
    if (auto ms = petrel::ParseDurationMs(value); !ms.ok()) {
      *exit = UsageError(&self, std::string("--") + flag + ": " + ms.status().message());
      return false;
    }
    (*body)[key] = value;
  }
  return true;
}

int ClusterInit(Client& client, const ParsedArgs& args, const Command& self) {
  json body;
  if (int exit = 0; !SettingsBody(args, self, &body, &exit)) return exit;
  auto token = PostForToken(client, "/v1/cluster/init", body.dump());
  if (!token.ok()) return Fail(token.status());
  Print(
      "cluster initialised; join other nodes with: petreld --peer-listen ADDR:PORT --join "
      "THIS_NODE:PORT --token TOKEN, TOKEN being the next line\n" +
      *token + "\n");
  return 0;
}

int ClusterSet(Client& client, const ParsedArgs& args, const Command& self) {
  json body;
  if (int exit = 0; !SettingsBody(args, self, &body, &exit)) return exit;
  if (body.empty()) {
    return UsageError(&self,
                      "nothing to set: give --heartbeat, --node-lost-after or --fence-after");
  }
  const std::string target = "/v1/cluster/settings";
  auto answer = client.Call("PUT", target, body.dump());
  if (!answer.ok()) return Fail(answer.status());
  auto j = ParseJson(*answer);
  auto settings = j.ok() ? DecodeSettings(*j) : j.status();
  if (!settings.ok()) {
    return Fail(settings.status().WithContext("unexpected answer from petreld to PUT " + target));
  }
  Print("cluster settings now: " + SettingsText(*settings) + "\n");
  return 0;
}

int ClusterToken(Client& client, const ParsedArgs& args) {
  petrel::Result<std::string> token = args.Has("rotate")
                                          ? PostForToken(client, "/v1/cluster/token/rotate", "{}")
                                          : Fetch(client, "/v1/cluster/token", DecodeToken);
  if (!token.ok()) return Fail(token.status());
  Print(*token + "\n");
  return 0;
}

int ClusterStatus(Client& client, const ParsedArgs& args, const Command& self) {
  std::string output = args.Last("output");
  if (output != "" && output != "json") {
    return UsageError(&self, "unknown output format \"" + output + "\" (json)");
  }
  auto raw = Fetch(client, "/v1/cluster", Checked(DecodeCluster));
  if (!raw.ok()) return Fail(raw.status());
  if (output == "json") {
    Print(PrettyJson(*raw) + "\n");
    return 0;
  }
  Print(ClusterStatusText(DecodeCluster(*raw).value(), NowMs()));
  return 0;
}

int RunCluster(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  constexpr const char kSubs[] = "(init, set, token, status, remove)";
  if (pos.empty()) return UsageError(&self, std::string("missing the subcommand ") + kSubs);
  const std::string& sub = pos[0];
  if (sub != "init" && sub != "set" && sub != "token" && sub != "status" && sub != "remove") {
    return UsageError(&self, "unknown subcommand \"" + sub + "\" " + kSubs);
  }
  for (const auto& [flag, owners] : kClusterFlags) {
    if (args.Has(flag) && !OwnsFlag(owners, sub)) {
      return UsageError(&self, std::string("--") + flag + " is a flag of " + OwnersText(owners));
    }
  }
  if (sub == "remove") {
    if (pos.size() < 2) return UsageError(&self, "missing the NODE to remove");
    if (pos.size() > 2) return UsageError(&self, "unexpected argument \"" + pos[2] + "\"");
    auto answer = client.Call("DELETE", "/v1/nodes/" + UrlEscape(pos[1]));
    if (!answer.ok()) return Fail(answer.status());
    Print("node.petrel/" + pos[1] + " removed\n");
    return 0;
  }
  if (pos.size() > 1) return UsageError(&self, "unexpected argument \"" + pos[1] + "\"");
  if (sub == "init") return ClusterInit(client, args, self);
  if (sub == "set") return ClusterSet(client, args, self);
  if (sub == "token") return ClusterToken(client, args);
  return ClusterStatus(client, args, self);
}

// --- drain, uncordon ---

int RunDrainOrUncordon(Client& client, const ParsedArgs& args, const Command& self) {
  const auto& pos = args.positional;
  if (pos.empty()) return UsageError(&self, "missing the NODE");
  if (pos.size() > 1) return UsageError(&self, "unexpected argument \"" + pos[1] + "\"");
  auto answer = client.Call("POST", "/v1/nodes/" + UrlEscape(pos[0]) + "/" + self.name);
  if (!answer.ok()) return Fail(answer.status());
  Print("node.petrel/" + pos[0] + (self.name == "drain" ? " draining\n" : " uncordoned\n"));
  return 0;
}

// --- version ---

int RunVersion(Client& client, const ParsedArgs& args, const Command& self) {
  if (!args.positional.empty()) {
    return UsageError(&self, "unexpected argument \"" + args.positional[0] + "\"");
  }
  Print("Client Version: " PETRELCTL_VERSION "\n");
  std::fflush(stdout);
  auto server = Fetch(client, "/v1/version", [](const json& j) -> petrel::Result<json> {
    if (!j.is_object() || !j.contains("version") || !j["version"].is_string()) {
      return Status::InvalidArgument("version: is missing");
    }
    return j;
  });
  if (!server.ok()) return Fail(server.status());
  std::string line = "Server Version: " + server->at("version").get<std::string>();
  std::string extra;
  for (const char* key : {"api", "runtime", "node"}) {
    auto it = server->find(key);
    if (it == server->end() || !it->is_string()) continue;
    extra += (extra.empty() ? "" : ", ") + std::string(key) + " " + it->get<std::string>();
  }
  Print(line + (extra.empty() ? "" : " (" + extra + ")") + "\n");
  return 0;
}

int RunHelp(Client& client, const ParsedArgs& args, const Command& self);

// --- the commands and their help ---

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"apply",
       "apply -f FILE|DIR [-f FILE|DIR]... [--progress auto|plain|none]",
       "Create or update workloads from manifest files",
       "Reads every manifest (a file, or a directory's *.yaml, *.yml and *.json) and checks\n"
       "it with petrel's parser first: an error names file, line, column and field, and\n"
       "nothing is sent. Then applies all workloads at once (all or nothing) and prints\n"
       "what happened to each: created, configured (its spec changed) or unchanged.\n"
       "On a terminal it then shows, on stderr, a progress bar while the images of the\n"
       "created and configured workloads arrive (bytes, rate, layers, ETA), and returns\n"
       "once none is pulling; --progress plain prints lines instead (and waits the same,\n"
       "also in a script), --progress none returns at once. Elsewhere (auto) it returns\n"
       "at once, as before: scripts that apply and go on are not held up.\n",
       "  petrelctl apply -f web.yaml\n"
       "  petrelctl apply -f /etc/petrel/manifests -f extra.json\n",
       {{"filename", 'f', "FILE|DIR", "manifest file or directory; repeatable"},
        {"progress", 0, "MODE", "images' progress: auto (default), plain or none"}},
       RunApply},
      {"get",
       "get workloads [NAME] [-o json|wide] | get nodes [NAME] [-o json] | get images [-o json]",
       "List workloads and the state of their replicas, the cluster's nodes, or images",
       "Prints NAME, READY (ready/desired replicas), PHASE, RESTARTS (summed over the\n"
       "replicas) and AGE (since first applied). PHASE is the phase all replicas share,\n"
       "else the worst one, in this order: CrashLoop, Exited, Stopping, Pending, Creating,\n"
       "Running (a phase petrelctl does not know counts as worst of all).\n"
       "\"workload\" and \"wl\" work as well as \"workloads\".\n"
       "\n"
       "  -o wide  adds IMAGE and NODES (where the replicas run).\n"
       "  -o json  prints {\"items\":[WORKLOAD...]} with sorted keys, each WORKLOAD exactly\n"
       "           {name, phase, desiredReplicas, readyReplicas, replicas: [{index, phase,\n"
       "           ready, containerId, pid, restarts, lastExitCode, message, node}]}; with\n"
       "           a NAME too. READY counts replicas that run and pass their readiness\n"
       "           and startup probes (all running ones, without probes).\n"
       "\n"
       "Nodes (of a cluster): NAME, ROLE (voter or witness), STATUS (Ready, Lost or\n"
       "Draining), LEADER (yes or no), ADDRESS (where peers reach it) and AGE (since it\n"
       "joined). -o json prints petreld's {\"items\":[NODE...]} as it is. \"node\" and \"no\"\n"
       "work as well as \"nodes\".\n"
       "\n"
       "Images (of petreld's runtime): IMAGE ID (its first 12 hex digits), REFERENCES, SIZE,\n"
       "AGE (since it came into the store) and IN USE (a container was made from it).\n"
       "-o json prints petreld's {\"items\":[IMAGE...]} as it is.\n",
       "  petrelctl get workloads\n"
       "  petrelctl get wl web -o json\n"
       "  petrelctl get nodes\n",
       {{"output", 'o', "FORMAT", "json or wide"}},
       RunGet},
      {"pull",
       "pull image REF [--policy Always|IfNotPresent|Never]",
       "Pull an image into petreld's runtime",
       "Pulls REF (a registry reference such as 127.0.0.1:5000/app:1, or an archive\n"
       "with its transport: oci-archive:/abs/file.tar) as a workload's would be, by\n"
       "default resolving the tag again (Always). Shows progress on stderr: a bar with\n"
       "bytes, layers, rate and ETA on a terminal, else a line at each phase and at most\n"
       "one a second. Prints \"image.petrel/REF pulled\" when done.\n",
       "  petrelctl pull image 127.0.0.1:5000/busybox:1.36\n",
       {{"policy", 0, "POLICY", "Always (default), IfNotPresent or Never"}},
       RunPull},
      {"import",
       "import image FILE",
       "Import an image archive (OCI or docker save) into petreld's runtime",
       "Looks into the tar: index.json at its top makes it an OCI archive\n"
       "(oci-archive:), manifest.json a `docker save` one (docker-archive:). The path is\n"
       "made absolute (petreld reads the file itself), then pulled as `pull image` does.\n",
       "  petrelctl import image busybox.tar\n",
       {},
       RunImport},
      {"prune",
       "prune images",
       "Remove every image no container uses",
       "Removes the images of petreld's runtime that no container uses, and the layers\n"
       "only they needed; prints each image id removed and how much was freed.\n",
       "  petrelctl prune images\n",
       {},
       RunPrune},
      {"describe",
       "describe workload NAME | describe node NAME",
       "Show one workload or node in detail",
       "A workload: its spec (image, replicas, restart policy, resources, command, env,\n"
       "ports, mounts), when it was created and last changed, a table of its replicas (with\n"
       "the node each runs on), and its last 20 events.\n"
       "A node: its id, role, status, address and labels, when it joined and was last\n"
       "heard from, and a table of the replicas that run on it.\n",
       "  petrelctl describe workload web\n"
       "  petrelctl describe node pi2\n",
       {},
       RunDescribe},
      {"delete",
       "delete workload NAME... | delete -f FILE|DIR | delete image REF...",
       "Delete workloads, by name or by the manifests that declare them, or images",
       "Deletes each workload; petreld then stops and removes its containers. With -f,\n"
       "every workload the manifests name. A name that does not exist is reported and\n"
       "the others are still deleted (exit status 1). An image (by a reference it came\n"
       "by, or its id) is refused while a container uses it.\n",
       "  petrelctl delete workload web\n"
       "  petrelctl delete image 127.0.0.1:5000/busybox:1.36\n"
       "  petrelctl delete -f examples/manifests\n",
       {{"filename", 'f', "FILE|DIR", "delete the workloads named in these manifests; repeatable"}},
       RunDelete},
      {"logs",
       "logs NAME [--replica N] [--tail BYTES] [-f]",
       "Print a replica's output",
       "Prints the replica's stdout and stderr as petreld keeps them (the last 64Ki unless\n"
       "--tail says otherwise). With -f, goes on printing new output as it comes, until\n"
       "interrupted or petreld ends the stream.\n",
       "  petrelctl logs web --replica 1 --tail 4Ki\n"
       "  petrelctl logs hello -f\n",
       {{"replica", 0, "N", "the replica's index (default 0)"},
        {"tail", 0, "BYTES", "how much of the end to print: 4096, 64Ki, 1Mi"},
        {"follow", 'f', "", "keep printing new output"}},
       RunLogs},
      {"events",
       "events [--workload NAME] [-f] [-o json]",
       "List or follow reconcile events",
       "Prints TIME (local), WORKLOAD, REPLICA (\"-\" when the event is about no one\n"
       "replica), TYPE and MESSAGE of every event petreld kept, oldest first. With -f, then\n"
       "prints new events as they happen, until interrupted. -o json prints the server's\n"
       "objects: {\"items\":[...]}, or with -f its NDJSON stream, one event per line.\n",
       "  petrelctl events --workload web\n"
       "  petrelctl events -f\n",
       {{"workload", 0, "NAME", "only this workload's events"},
        {"follow", 'f', "", "keep printing new events"},
        {"output", 'o', "FORMAT", "json"}},
       RunEvents},
      {"cluster",
       "cluster init|set|token|status|remove ...",
       "Start a cluster, change its settings, print its join token, show it, remove a node",
       "  cluster init [--heartbeat D] [--node-lost-after D] [--fence-after D]\n"
       "      Makes this node a one-node cluster (its petreld must run with --peer-listen).\n"
       "      Prints one line, then the join token as the last line. Durations as in\n"
       "      manifests (200ms, 1.5s); defaults 200ms, 1.5s, 1s.\n"
       "  cluster set [--heartbeat D] [--node-lost-after D] [--fence-after D]\n"
       "      Changes the cluster's settings; those not given keep their values. Every node\n"
       "      uses them from its next heartbeat on. fence after + heartbeat + 200ms must not\n"
       "      exceed node lost after. Prints the new settings on one line.\n"
       "  cluster token [--rotate]\n"
       "      Prints the join token alone; --rotate replaces it (the old one stops working).\n"
       "  cluster status [-o json]\n"
       "      The cluster's id, leader, term, settings and members; -o json prints\n"
       "      petreld's answer as it is.\n"
       "  cluster remove NODE\n"
       "      Removes a member; its certificate is refused from then on.\n"
       "\n"
       "A node joins by starting its petreld with --peer-listen ADDR:PORT --join ADDR:PORT\n"
       "--token TOKEN (see petreld --help).\n",
       "  petrelctl cluster init --node-lost-after 3s\n"
       "  petrelctl cluster set --heartbeat 500ms --node-lost-after 4s --fence-after 3s\n"
       "  TOKEN=$(petrelctl cluster token)\n"
       "  petrelctl cluster status\n"
       "  petrelctl cluster remove pi3\n",
       {{"heartbeat", 0, "D", "init, set: how often nodes heartbeat each other (default 200ms)"},
        {"node-lost-after", 0, "D", "init, set: silence after which a node is Lost (default 1.5s)"},
        {"fence-after", 0, "D",
         "init, set: a node cut off this long stops its exclusive workloads (default 1s)"},
        {"rotate", 0, "", "token: replace the token"},
        {"output", 'o', "FORMAT", "status: json"}},
       RunCluster},
      {"drain",
       "drain NODE",
       "Move a node's workloads away and place none on it",
       "Marks NODE Draining: the cluster's leader places its replicas on other nodes\n"
       "(they start there, then stop on NODE) and places nothing on it until\n"
       "'petrelctl uncordon NODE'. get nodes shows it as Draining.\n",
       "  petrelctl drain pi2\n",
       {},
       RunDrainOrUncordon},
      {"uncordon",
       "uncordon NODE",
       "Let a drained node take workloads again",
       "Ends Draining: NODE takes replicas again as they are placed (nothing that runs\n"
       "elsewhere moves back by itself).\n",
       "  petrelctl uncordon pi2\n",
       {},
       RunDrainOrUncordon},
      {"version",
       "version",
       "Print petrelctl's version and petreld's",
       "Prints the client's version, then asks petreld for its own. If petreld cannot be\n"
       "reached, the client's version is still printed, and the error, with exit status 1.\n",
       "  petrelctl version\n",
       {},
       RunVersion},
      {"help",
       "help [COMMAND]",
       "Show help for petrelctl or a command",
       "",
       "  petrelctl help logs\n",
       {},
       RunHelp},
  };
  return commands;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string FlagTable(const std::vector<FlagDef>& flags) {
  std::vector<std::vector<std::string>> rows;
  for (const FlagDef& f : flags) {
    std::string name = f.short_name ? std::string("-") + f.short_name + ", --" : "    --";
    name += f.name + (f.value_name.empty() ? "" : " " + f.value_name);
    rows.push_back({name, f.help});
  }
  return FormatTable(rows, "  ");
}

std::string Overview() {
  std::string text =
      "petrelctl controls petreld, the petrel daemon, over its Unix socket.\n"
      "\n"
      "Usage: petrelctl [--socket PATH] COMMAND [ARGS] [FLAGS]\n"
      "\n"
      "Commands:\n";
  std::vector<std::vector<std::string>> rows;
  for (const Command& c : Commands()) rows.push_back({c.name, c.summary});
  text += FormatTable(rows, "  ");
  text += "\nGlobal flags:\n" + FlagTable(GlobalFlags());
  text += "\nRun 'petrelctl help COMMAND' for a command's flags and examples.\n";
  return text;
}

std::string CommandHelp(const Command& c) {
  std::string text = "Usage: petrelctl " + c.synopsis + "\n\n" + c.summary + ".\n";
  if (!c.details.empty()) text += "\n" + c.details;
  if (!c.flags.empty()) text += "\nFlags:\n" + FlagTable(c.flags);
  text += "\nGlobal flags:\n" + FlagTable(GlobalFlags());
  if (!c.examples.empty()) text += "\nExamples:\n" + c.examples;
  return text;
}

int RunHelp(Client&, const ParsedArgs& args, const Command& self) {
  if (args.positional.empty()) {
    Print(Overview());
    return 0;
  }
  if (args.positional.size() > 1) {
    return UsageError(&self, "unexpected argument \"" + args.positional[1] + "\"");
  }
  const Command* c = FindCommand(args.positional[0]);
  if (c == nullptr) return UsageError(nullptr, "unknown command \"" + args.positional[0] + "\"");
  Print(CommandHelp(*c));
  return 0;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // The command is the first argument that is neither a flag nor --socket's value.
  const Command* cmd = nullptr;
  for (size_t i = 0; i < args.size(); i++) {
    if (args[i] == "--") break;
    if (args[i] == "--socket") {
      i++;
      continue;
    }
    if (args[i].size() > 1 && args[i][0] == '-') continue;
    cmd = FindCommand(args[i]);
    if (cmd == nullptr) return UsageError(nullptr, "unknown command \"" + args[i] + "\"");
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
    break;
  }
  std::vector<FlagDef> defs = GlobalFlags();
  if (cmd != nullptr) defs.insert(defs.end(), cmd->flags.begin(), cmd->flags.end());
  auto parsed = ParseFlags(args, defs);
  if (!parsed.ok()) return UsageError(cmd, parsed.status().message());
  if (parsed->Has("help")) {
    Print(cmd == nullptr || cmd->name == "help" ? Overview() : CommandHelp(*cmd));
    return 0;
  }
  if (cmd == nullptr) {
    if (!parsed->positional.empty()) {  // after "--"
      return UsageError(nullptr, "unknown command \"" + parsed->positional[0] + "\"");
    }
    std::fputs(Overview().c_str(), stderr);
    return kExitUsage;
  }

  std::string socket = parsed->Last("socket");
  if (!parsed->Has("socket")) {
    const char* env = std::getenv("PETREL_SOCKET");
    socket = env != nullptr && *env != '\0' ? env : kDefaultSocket;
  }
  if (socket.empty()) return UsageError(cmd, "--socket needs a path");

  CurlGlobal curl;
  Client client(socket);
  int rc = cmd->run(client, *parsed, *cmd);
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "petrelctl: write to stdout: %s\n", std::strerror(errno));
    return kExitError;
  }
  return rc;
}

}  // namespace
}  // namespace petrelctl

int main(int argc, char** argv) {
  try {
    return petrelctl::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petrelctl: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "petrelctl: internal error\n");
  }
  return 1;
}
