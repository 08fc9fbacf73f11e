-- wrk script: POST one image file as the raw request body (README: raw body with an image content type).
--   wrk -t2 -c8 -d20s -s tools/http-bench/post-image.lua "http://localhost:5080/v1/classify?defense=off" -- samples/bag.png
-- wrk itself prints "Non-2xx or 3xx responses: N" when any answer was an error; a valid run has no such line.
function init(args)
  local path = args[1] or "samples/bag.png"
  local f = assert(io.open(path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = path:match("%.jpe?g$") and "image/jpeg" or "image/png"
end
