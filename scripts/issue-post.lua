-- wrk script for the HTTP issuance load benchmark (scripts/bench-issue.sh).
--
-- Replays the JSON bodies of ISSUE_BENCH_BODIES (one per line, made by
-- internal/cmd/issuebench) as POST /api/v1/certificates with the bearer
-- token ISSUE_BENCH_TOKEN, each thread starting at its own offset. Every
-- request is formatted once in init, so wrk spends its CPU on sockets, not
-- on Lua (no response() callback either, for the same reason). done()
-- prints one RESULT line that the shell script parses; wrk counts answers
-- other than 2xx and 3xx as status errors, and the script compares the
-- server's count of issued certificates with the requests wrk made.

local bodies_file = assert(os.getenv("ISSUE_BENCH_BODIES"), "ISSUE_BENCH_BODIES")
local token = assert(os.getenv("ISSUE_BENCH_TOKEN"), "ISSUE_BENCH_TOKEN")

local reqs, count, next_index
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
  reqs = {}
  for line in io.lines(bodies_file) do
    reqs[#reqs + 1] = wrk.format("POST", "/api/v1/certificates", headers, line)
  end
  count = #reqs
  assert(count > 0, "no bodies")
  next_index = (thread_index or 0) * 97
end

function request()
  next_index = next_index + 1
  return reqs[next_index % count + 1]
end

-- This script's directory, for the shared RESULT line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "wrk-result.lua")
