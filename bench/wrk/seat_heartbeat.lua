-- Desktop seats' heartbeats, each request from a seat picked at random among BENCH_SEATS
-- (a file of "student_id exam_id" lines).
local bodies = {}
for line in io.lines(os.getenv("BENCH_SEATS")) do
  local student, exam = line:match("^(%S+) (%d+)$")
  bodies[#bodies + 1] = '{"student_id": "' .. student .. '", "exam_id": ' .. exam .. '}'
end
local headers = { ["Content-Type"] = "application/json" }

request = function()
  return wrk.format("POST", "/api/heartbeat", headers, bodies[math.random(#bodies)])
end
