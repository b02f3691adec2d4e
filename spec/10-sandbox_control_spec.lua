-- The sandbox's rate limits, faults, stats/reset, keep-alive, concurrency and XML API.
local helpers = require "helpers"

local q = helpers.quote

describe("sandbox", function()
  local sb = helpers.use_sandbox{ accounts = 250 }
  local token, div
  before_each(function()
    div, token = sb.division, sb:tokens().access_token
  end)

  local function me()
    return sb:api("GET", "/api/v1/current/Me", token)
  end

  describe("rate limits", function()
    it("sends all six X-RateLimit headers with resets in epoch milliseconds", function()
      local status, _, h = me()
      assert.equal(200, status)
      assert.equal("5000", h["x-ratelimit-limit"])
      assert.equal("4999", h["x-ratelimit-remaining"])
      assert.equal("60", h["x-ratelimit-minutely-limit"])
      assert.equal("59", h["x-ratelimit-minutely-remaining"])
      local clock = sb:stats().clock
      local daily, minutely = tonumber(h["x-ratelimit-reset"]), tonumber(h["x-ratelimit-minutely-reset"])
      assert.truthy(daily > 1e12 and minutely > 1e12)
      assert.equal(0, daily % 86400000)
      assert.equal(0, minutely % 60000)
      assert.truthy(minutely > clock * 1000 and minutely <= (clock + 60) * 1000)
      assert.truthy(daily > clock * 1000 and daily <= (clock + 86400) * 1000)
    end)

    it("counts down per call", function()
      -- a window of ~11.6 days: no boundary falls inside the test, however slow the machine
      sb:limits{ window = 1e6 }
      local _, _, h1 = me()
      local _, _, h2 = me()
      assert.equal("59", h1["x-ratelimit-minutely-remaining"])
      assert.equal("58", h2["x-ratelimit-minutely-remaining"])
      assert.equal("4998", h2["x-ratelimit-remaining"])
    end)

    it("answers 429 past the minutely limit with only the minutely headers, until the next window", function()
      sb:limits{ minutely = 3, window = 1e6 }
      for i = 1, 3 do
        local status, _, h = me()
        assert.equal(200, status)
        assert.equal(tostring(3 - i), h["x-ratelimit-minutely-remaining"])
      end
      local status, body, h = me()
      assert.equal(429, status)
      assert.is_string(body.error.message.value)
      assert.equal("0", h["x-ratelimit-minutely-remaining"])
      assert.equal("3", h["x-ratelimit-minutely-limit"])
      assert.equal(0, tonumber(h["x-ratelimit-minutely-reset"]) % 1e9)
      assert.is_nil(h["x-ratelimit-limit"])
      assert.is_nil(h["x-ratelimit-remaining"])
      assert.is_nil(h["x-ratelimit-reset"])
      assert.equal(1, sb:stats().rate_limited)
      -- the next window starts at the reset instant
      local wait = tonumber(h["x-ratelimit-minutely-reset"]) / 1000 - sb:stats().clock
      sb:advance(wait + 0.01)
      token = sb:tokens().access_token
      assert.equal(200, (me()))
    end)

    it("answers 429 past the daily limit with only the daily headers", function()
      sb:limits{ daily = 2 }
      assert.equal(200, (me()))
      assert.equal(200, (me()))
      local status, _, h = me()
      assert.equal(429, status)
      assert.equal("2", h["x-ratelimit-limit"])
      assert.equal("0", h["x-ratelimit-remaining"])
      assert.equal(0, tonumber(h["x-ratelimit-reset"]) % 86400000)
      assert.is_nil(h["x-ratelimit-minutely-limit"])
      assert.is_nil(h["x-ratelimit-minutely-remaining"])
      assert.is_nil(h["x-ratelimit-minutely-reset"])
    end)

    it("no429headers: a 429 without any X-RateLimit header (as older reports saw); 200s keep all six", function()
      sb:configure{ no429headers = true, minutely = 1, window = 1e6 }
      local status, _, h = me()
      assert.equal(200, status)
      assert.equal("0", h["x-ratelimit-minutely-remaining"])
      assert.equal("5000", h["x-ratelimit-limit"])
      local status2, body, h2 = me()
      assert.equal(429, status2)
      assert.is_string(body.error.message.value)
      for name in pairs(h2) do assert.is_nil(name:find("^x%-ratelimit"), name) end
      assert.equal(1, sb:stats().rate_limited)
      sb:configure{ daily = 1, minutely = 60 }
      local status3, _, h3 = me()
      assert.equal(429, status3)
      for name in pairs(h3) do assert.is_nil(name:find("^x%-ratelimit"), name) end
    end)

    it("counts per division", function()
      sb:limits{ minutely = 2, window = 1e6 }
      local path = "/api/v1/" .. div .. "/system/Divisions"
      assert.equal(200, (sb:api("GET", path, token)))
      assert.equal(200, (sb:api("GET", path, token)))
      assert.equal(429, (sb:api("GET", path, token)))
      assert.equal(200, (sb:api("GET", "/api/v1/" .. (div + 1) .. "/system/Divisions", token)))
    end)
  end)

  describe("faults", function()
    it("html503 and html500 answer an HTML page, then the API is back", function()
      sb:fault("html503", 1)
      local status, body, h, raw = me()
      assert.equal(503, status)
      assert.is_nil(body)
      assert.truthy(h["content-type"]:find("text/html", 1, true))
      assert.truthy(raw:find("<html", 1, true))
      sb:fault("html500", 2)
      assert.equal(500, (me()))
      assert.equal(500, (me()))
      assert.equal(200, (me()))
      assert.equal(3, sb:stats().faults_served)
    end)

    it("garbage answers 200 with broken JSON", function()
      sb:fault("garbage", 1)
      local status, body, h, raw = me()
      assert.equal(200, status)
      assert.is_nil(body)
      assert.truthy(h["content-type"]:find("json", 1, true))
      assert.truthy(#raw > 0)
    end)

    it("truncate sends less than Content-Length and closes", function()
      sb:fault("truncate", 1)
      local status, err, code = helpers.http("GET", sb:url("/api/v1/current/Me"), {
        cafile = sb.cafile, headers = { Accept = "application/json", Authorization = "Bearer " .. token } })
      assert.is_nil(status)
      assert.equal(18, code, err)
      assert.equal(200, (me()))
    end)

    it("reset closes the connection without an answer", function()
      sb:fault("reset", 1)
      local status, err, code = helpers.http("GET", sb:url("/api/v1/current/Me"), {
        cafile = sb.cafile, headers = { Accept = "application/json", Authorization = "Bearer " .. token } })
      assert.is_nil(status)
      assert.equal(52, code, err)
      assert.equal(200, (me()))
    end)

    it("401 answers Unauthorized even with a good token", function()
      sb:fault("401", 1)
      assert.equal(401, (me()))
      assert.equal(200, (me()))
    end)

    it("slow delays the answer, which is then normal", function()
      sb:fault("slow", 1, { seconds = 3 })
      local status, _, code = helpers.http("GET", sb:url("/api/v1/current/Me"), { timeout = 1,
        cafile = sb.cafile, headers = { Accept = "application/json", Authorization = "Bearer " .. token } })
      assert.is_nil(status)
      assert.equal(28, code)
      sb:fault("slow", 1, { seconds = 0.2 })
      local s2, body = me()
      assert.equal(200, s2)
      assert.equal(div, body.d.results[1].CurrentDivision)
    end)

    it("rejects an unknown fault kind", function()
      local status = helpers.http("POST", sb:url("/_sandbox/fault?kind=nope"), { cafile = sb.cafile,
        headers = sb:control_headers() })
      assert.equal(400, status)
    end)
  end)

  describe("stats and reset", function()
    it("counts and forgets", function()
      me()
      sb:api("GET", "/api/v1/current/Me", nil)
      sb:advance(100)
      local s = sb:stats()
      assert.equal(2, s.api_calls)
      assert.equal(1, s.unauthorized)
      assert.equal(1, s.code_exchanges)
      assert.equal(1, s.token_calls)
      assert.equal(100, s.clock_offset)
      sb:limits{ minutely = 1 }
      sb:reset()
      s = sb:stats()
      assert.equal(0, s.api_calls)
      assert.equal(0, s.token_calls)
      assert.equal(0, s.clock_offset)
      assert.equal(60, s.limits.minutely)
      -- tokens are forgotten too
      assert.equal(401, (me()))
    end)
  end)

  describe("HTTP", function()
    it("keeps the connection alive across requests", function()
      local url = q(sb:url("/api/v1/current/Me"))
      local hdr = "-H 'Accept: application/json' -H " .. q("Authorization: Bearer " .. token)
      local p = io.popen("curl -s --cacert " .. q(sb.cafile) .. " " .. hdr ..
        " -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\\n' " .. url .. " " .. url)
      local out = p:read("*a")
      p:close()
      assert.equal("200 1\n200 0\n", out)
    end)

    it("tells in stats what the last API and token requests looked like, connection reuse included", function()
      local url = q(sb:url("/api/v1/current/Me"))
      local p = io.popen("curl -s --cacert " .. q(sb.cafile) .. " -A spec-agent/1 " ..
        "-H 'Accept: application/json' -H " .. q("Authorization: Bearer " .. token) ..
        " -o /dev/null -o /dev/null " .. url .. " " .. url)
      p:read("*a")
      p:close()
      local s = sb:stats()
      local last = s.last_api_request
      assert.equal("spec-agent/1", last.user_agent)
      assert.equal("application/json", last.accept)
      assert.is_nil(last.accept_encoding)
      assert.equal("HTTP/1.1", last.protocol)
      assert.equal(2, last.connection_requests) -- the second request on one connection
      assert.is_number(last.connection)
      assert.equal("application/x-www-form-urlencoded", s.last_token_request.content_type)
      assert.are_not.equal(last.connection, s.last_token_request.connection)
    end)

    it("gzips large answers for clients that ask, and only for them", function()
      local path = "/api/v1/" .. div .. "/crm/Accounts"
      local headers = { Accept = "application/json", Authorization = "Bearer " .. token }
      local status, h, body = helpers.http("GET", sb:url(path), { cafile = sb.cafile, headers = headers,
        extra = "--compressed" })
      assert.equal(200, status)
      assert.equal("gzip", h["content-encoding"])
      assert.equal(60, #helpers.json.decode(body).d.results)
      status, h, body = helpers.http("GET", sb:url(path), { cafile = sb.cafile, headers = headers })
      assert.equal(200, status)
      assert.is_nil(h["content-encoding"])
      assert.equal(60, #helpers.json.decode(body).d.results)
      -- a small answer stays plain
      status, h = helpers.http("GET", sb:url("/api/v1/current/Me"), { cafile = sb.cafile, headers = headers,
        extra = "--compressed" })
      assert.equal(200, status)
      assert.is_nil(h["content-encoding"])
    end)

    it("serves concurrent clients, all counted", function()
      sb:limits{ window = 1e6 }
      local cmd = {}
      for _ = 1, 10 do
        cmd[#cmd + 1] = "curl -s -o /dev/null -w '%{http_code}\\n' --cacert " .. q(sb.cafile) ..
          " -H 'Accept: application/json' -H " .. q("Authorization: Bearer " .. token) .. " " ..
          q(sb:url("/api/v1/" .. div .. "/crm/Accounts?$top=5")) .. " & "
      end
      local p = io.popen(table.concat(cmd) .. "wait")
      local out = p:read("*a")
      p:close()
      local n = 0
      for code in out:gmatch("%d+") do
        assert.equal("200", code)
        n = n + 1
      end
      assert.equal(10, n)
      assert.equal(10, sb:stats().api_calls)
      local _, _, h = me()
      assert.equal("49", h["x-ratelimit-minutely-remaining"])
    end)
  end)

  describe("XML API", function()
    local function download(paging)
      local url = sb:url("/docs/XMLDownload.aspx?Topic=Accounts&_Division_=" .. div ..
        (paging and ("&TSPaging=" .. paging) or ""))
      return helpers.http("GET", url, { cafile = sb.cafile, headers = { Authorization = "Bearer " .. token } })
    end

    it("pages XMLDownload by ts_d / TSPaging", function()
      local total, paging, pages = 0, nil, 0
      repeat
        local status, h, body = download(paging)
        assert.equal(200, status)
        assert.truthy(h["content-type"]:find("xml", 1, true))
        assert.truthy(h["x-ratelimit-minutely-remaining"])
        local ts, count, size = body:match('<Topic code="Accounts" ts_d="(0x%x+)" count="(%d+)" pagesize="(%d+)"')
        assert.truthy(ts)
        local rows = select(2, body:gsub("<Account ", ""))
        assert.equal(tonumber(count), rows)
        total = total + rows
        paging = ts
        pages = pages + 1
      until tonumber(count) < tonumber(size)
      assert.equal(250, total)
      assert.equal(3, pages)
    end)

    it("XMLUpload creates an account the REST API then shows", function()
      local xml = '<?xml version="1.0" encoding="utf-8"?><eExact><Accounts>' ..
        '<Account code="XML1" status="C"><Name>Über &amp; Co</Name></Account></Accounts></eExact>'
      local status, _, body = helpers.http("POST", sb:url("/docs/XMLUpload.aspx?Topic=Accounts&_Division_=" .. div),
        { cafile = sb.cafile, headers = { Authorization = "Bearer " .. token, ["Content-Type"] = "application/xml" },
          body = xml })
      assert.equal(200, status)
      assert.truthy(body:find('type="2"', 1, true))
      local _, got = sb:api("GET", "/api/v1/" .. div .. "/crm/Accounts?$filter=" ..
        helpers.escape("Code eq '              XML1'"), token)
      assert.equal(1, #got.d.results)
      assert.equal("Über & Co", got.d.results[1].Name)
    end)

    it("needs a Bearer token", function()
      token = "nope"
      assert.equal(401, (download()))
    end)
  end)
end)
