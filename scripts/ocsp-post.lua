-- wrk script for the OCSP load benchmark (scripts/bench-ocsp.sh).
--
-- Every request asks about a random certificate among those seeded by
-- `ocspbench seed`, whose request files it reads:
--   OCSP_BENCH_MODE=post   POST bodies from post.bin  (no nonce: pre-signed path)
--   OCSP_BENCH_MODE=nonce  POST bodies from nonce.bin (nonce: signed live)
--   OCSP_BENCH_MODE=get    GET paths from get.txt     (no nonce: pre-signed path)
--   OCSP_BENCH_MODE=warm   POST bodies from post.bin in order, each thread
--                          its own share: asks once for every certificate
-- The .bin files hold fixed-size DER records (OCSP_BENCH_RECORD bytes
-- each); init formats every request once, so a request is a table read. OCSP_BENCH_DIR is where the files
-- are; OCSP_BENCH_PATH the POST path ("/ocsp"; "/" for OpenSSL).
-- done() prints one RESULT line that the shell script parses.

local mode = os.getenv("OCSP_BENCH_MODE") or "post"
local dir = os.getenv("OCSP_BENCH_DIR") or "."
local post_path = os.getenv("OCSP_BENCH_PATH") or "/ocsp"
local record = tonumber(os.getenv("OCSP_BENCH_RECORD") or "0")

local data, count, paths, next_index, reqs
local headers = { ["Content-Type"] = "application/ocsp-request" }

local threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

local function read_all(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  -- Each wrk thread has its own Lua state: seed it differently.
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  if mode == "get" then
    paths = {}
    for line in read_all("get.txt"):gmatch("[^\n]+") do
      paths[#paths + 1] = line
    end
    count = #paths
  else
    data = read_all(mode == "nonce" and "nonce.bin" or "post.bin")
    next_index = thread_index or 0
    assert(record > 0 and #data % record == 0, "OCSP_BENCH_RECORD does not divide the request file")
    count = #data / record
  end
  assert(count > 0, "no requests")
  -- Every request is formatted once, here: formatting one per request in
  -- Lua cost wrk more CPU than the trivial ceiling handler costs the
  -- server, on the same two cores, and capped what the harness measures.
  reqs = {}
  for i = 1, count do
    if mode == "get" then
      reqs[i] = wrk.format("GET", paths[i])
    else
      reqs[i] = wrk.format("POST", post_path, headers, data:sub((i - 1) * record + 1, i * record))
    end
  end
  data, paths = nil, nil
end

function request()
  local i
  if mode == "warm" then
    -- Threads take interleaved shares of the records, in order.
    i = next_index % count + 1
    next_index = next_index + (tonumber(os.getenv("OCSP_BENCH_THREADS") or "2"))
  else
    i = math.random(count)
  end
  return reqs[i]
end

-- This script's directory, for the shared RESULT line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "wrk-result.lua")
