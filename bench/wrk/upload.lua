-- Segment uploads: the bytes of BENCH_SEGMENT (an mp4) PUT again and again, each request a new
-- seq of the next session of BENCH_SESSIONS ("session_id token" lines), so every one is stored.
-- Each wrk thread numbers its seqs apart from the others' (thread id + a multiple of BENCH_THREADS).
local file = assert(io.open(os.getenv("BENCH_SEGMENT"), "rb"))
local body = file:read("*a")
file:close()
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do
  local sid, token = line:match("^(%d+) (%S+)$")
  sessions[#sessions + 1] = { sid, "Bearer " .. token }
end
local threads = tonumber(os.getenv("BENCH_THREADS"))
local next_id = 0

setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local sent = 0
request = function()
  local s = sessions[sent % #sessions + 1]
  local seq = math.floor(sent / #sessions) * threads + id
  sent = sent + 1
  return wrk.format("PUT", "/api/sessions/" .. s[1] .. "/segments/" .. seq,
    { ["Authorization"] = s[2], ["Content-Type"] = "video/mp4" }, body)
end
