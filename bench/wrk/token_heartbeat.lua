-- Token-API heartbeats, each request from a session picked at random among BENCH_SESSIONS
-- (a file of "session_id token" lines).
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do
  local sid, token = line:match("^(%d+) (%S+)$")
  sessions[#sessions + 1] = { sid, "Bearer " .. token }
end

request = function()
  local s = sessions[math.random(#sessions)]
  return wrk.format("POST", "/api/sessions/" .. s[1] .. "/heartbeat", { ["Authorization"] = s[2] }, "")
end
