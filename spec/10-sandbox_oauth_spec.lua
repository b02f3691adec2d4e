-- The sandbox's OAuth endpoints behave as Exact Online's do (../shared/exact-online.md).
local helpers = require "helpers"

describe("sandbox oauth", function()
  local sb = helpers.use_sandbox{ accounts = 20 }

  describe("/api/oauth2/auth", function()
    it("redirects to the registered URI with a %21-encoded code and the state", function()
      local loc = assert(sb:authorize{ state = "st ate/1" })
      assert.equal(sb.redirect_uri .. "?", loc:sub(1, #sb.redirect_uri + 1))
      assert.truthy(loc:find("code=[^&]*%%21"))
      assert.is_nil(loc:match("code=[^&]*!"))
      local q = helpers.query(loc)
      assert.equal("st ate/1", q.state)
      assert.truthy(q.code:find("!", 1, true))
      assert.equal(1, sb:stats().codes_issued)
    end)

    it("shows an error page, no redirect, for an unknown client", function()
      local loc, status, body = sb:authorize{ client_id = "00000000-0000-0000-0000-000000000000" }
      assert.is_nil(loc)
      assert.equal(400, status)
      assert.truthy(body:find("not found", 1, true))
    end)

    it("shows an error page for an unregistered redirect URI", function()
      local loc, status = sb:authorize{ redirect_uri = "https://evil.example/cb" }
      assert.is_nil(loc)
      assert.equal(400, status)
    end)

    it("redirects with error=access_denied when consent is denied", function()
      local loc = assert(sb:authorize{ deny = true, state = "s1" })
      local q = helpers.query(loc)
      assert.equal("access_denied", q.error)
      assert.is_nil(q.code)
      assert.equal("s1", q.state)
    end)
  end)

  describe("code exchange", function()
    it("returns a bearer token pair with expires_in the string \"600\"", function()
      local status, t, h = sb:exchange()
      assert.equal(200, status)
      assert.equal("600", t.expires_in)
      assert.equal("bearer", t.token_type)
      assert.truthy(#t.access_token > 100)
      assert.truthy(t.refresh_token:find("!", 1, true))
      assert.truthy(h["content-type"]:find("application/json", 1, true))
      local s = sb:stats()
      assert.equal(1, s.code_exchanges)
      assert.equal(1, s.token_calls)
    end)

    it("accepts a code only once", function()
      local code = sb:code()
      assert.equal(200, (sb:exchange(code)))
      local status, t = sb:exchange(code)
      assert.equal(400, status)
      assert.equal("invalid_grant", t.error)
    end)

    it("rejects a code that is still %21-encoded", function()
      local code = sb:code()
      local status, t = sb:exchange((code:gsub("!", "%%21")))
      assert.equal(400, status)
      assert.equal("invalid_grant", t.error)
      assert.equal(200, (sb:exchange(code)))
    end)

    it("rejects a code older than 180 s of sandbox time", function()
      local code = sb:code()
      sb:advance(181)
      local status, t = sb:exchange(code)
      assert.equal(400, status)
      assert.equal("invalid_grant", t.error)
    end)

    it("accepts a code at 170 s", function()
      local code = sb:code()
      sb:advance(170)
      assert.equal(200, (sb:exchange(code)))
    end)

    it("requires the same redirect_uri", function()
      local status, t = sb:exchange(nil, { redirect_uri = "https://localhost/other" })
      assert.equal(400, status)
      assert.equal("invalid_grant", t.error)
    end)

    it("answers invalid_client for a wrong secret or an unknown client", function()
      local status, t = sb:exchange(nil, { client_secret = "wrong" })
      assert.equal(401, status)
      assert.equal("invalid_client", t.error)
      status, t = sb:exchange(nil, { client_id = "11111111-1111-1111-1111-111111111111" })
      assert.equal(400, status)
      assert.equal("invalid_client", t.error)
    end)

    it("never echoes the client secret", function()
      local _, t = sb:exchange(nil, { client_secret = "wrong-secret-xyz" })
      assert.is_nil(require("cjson").encode(t):find("wrong-secret-xyz", 1, true))
    end)

    it("wants a form body", function()
      local status = helpers.http("POST", sb:url("/api/oauth2/token"), {
        cafile = sb.cafile, headers = { ["Content-Type"] = "application/json" }, body = "{}" })
      assert.equal(400, status)
    end)
  end)

  describe("refresh", function()
    it("is too early within 570 s of the last token request", function()
      local t = sb:tokens()
      sb:advance(560)
      local status, body, h = sb:refresh(t.refresh_token)
      assert.equal(400, status)
      assert.equal("access_denied", body.error)
      assert.equal("Rate limit exceeded: access_token not expired", body.error_description)
      assert.equal("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired", h.reason)
      assert.equal(1, sb:stats().too_early)
      -- the token is not spent by a too-early attempt
      sb:advance(15)
      assert.equal(200, (sb:refresh(t.refresh_token)))
    end)

    it("rotates: the old refresh token then gets 401 unauthorized_client", function()
      local t = sb:tokens()
      sb:advance(580)
      local status, t2 = sb:refresh(t.refresh_token)
      assert.equal(200, status)
      assert.are_not.equal(t.refresh_token, t2.refresh_token)
      assert.equal("600", t2.expires_in)
      sb:advance(600)
      local status2, body = sb:refresh(t.refresh_token)
      assert.equal(401, status2)
      assert.equal("unauthorized_client", body.error)
      assert.equal("Old refresh token used.", body.error_description)
      local s = sb:stats()
      assert.equal(1, s.refreshes)
      assert.equal(1, s.old_refresh_used)
      -- the new one still works
      assert.equal(200, (sb:refresh(t2.refresh_token)))
    end)

    it("lets only one of many concurrent refreshes with one token win", function()
      local t = sb:tokens()
      sb:advance(600)
      local form = helpers.form{ grant_type = "refresh_token", refresh_token = t.refresh_token,
                                 client_id = sb.client_id, client_secret = sb.client_secret }
      local cmd = {}
      for _ = 1, 8 do
        cmd[#cmd + 1] = "curl -s -o /dev/null -w '%{http_code}\\n' --cacert " .. helpers.quote(sb.cafile) ..
          " -H 'Content-Type: application/x-www-form-urlencoded' --data-binary " .. helpers.quote(form) .. " " ..
          helpers.quote(sb:url("/api/oauth2/token")) .. " & "
      end
      local p = io.popen(table.concat(cmd) .. " wait")
      local out = p:read("*a")
      p:close()
      local ok, old = 0, 0
      for code in out:gmatch("%d+") do
        if code == "200" then ok = ok + 1 elseif code == "401" then old = old + 1 end
      end
      assert.equal(1, ok)
      assert.equal(7, old)
    end)

    it("dies after 30 days with invalid_request and the expiry date", function()
      local t = sb:tokens()
      sb:advance(30 * 86400 + 5)
      local status, body = sb:refresh(t.refresh_token)
      assert.equal(400, status)
      assert.equal("invalid_request", body.error)
      assert.truthy(body.error_description:match("^The refresh token expired at %d+/%d+/%d%d%d%d %d+:%d%d:%d%d [AP]M" ..
        " and it is now %d+/%d+/%d%d%d%d %d+:%d%d:%d%d [AP]M%.$"))
    end)

    it("works on day 29", function()
      local t = sb:tokens()
      sb:advance(29 * 86400)
      assert.equal(200, (sb:refresh(t.refresh_token)))
    end)

    it("rejects an unknown refresh token", function()
      local status, body = sb:refresh("nonsense!token")
      assert.equal(400, status)
      assert.equal("invalid_grant", body.error)
    end)
  end)

  describe("answer shapes other clients have met (/_sandbox/config)", function()
    it("expires_in as a number and token_type \"Bearer\"", function()
      sb:configure{ expires_in_number = true, token_type = "Bearer" }
      local status, t = sb:exchange()
      assert.equal(200, status)
      assert.equal(600, t.expires_in)
      assert.equal("number", type(t.expires_in))
      assert.equal("Bearer", t.token_type)
      assert.equal(200, (sb:api("GET", "/api/v1/current/Me", t.access_token)))
      sb:configure{ expires_in_number = false }
      assert.equal("600", select(2, sb:exchange()).expires_in)
    end)

    it("refresh_keeps: a refresh answer without refresh_token, and the old one stays valid", function()
      sb:configure{ refresh_keeps = true }
      local t = sb:tokens()
      sb:advance(575)
      local status, t2 = sb:refresh(t.refresh_token)
      assert.equal(200, status)
      assert.is_nil(t2.refresh_token)
      assert.equal(200, (sb:api("GET", "/api/v1/current/Me", t2.access_token)))
      -- the chain's clock still moved: too early again, then the same refresh token works
      assert.equal(400, (sb:refresh(t.refresh_token)))
      sb:advance(575)
      assert.equal(200, (sb:refresh(t.refresh_token)))
      assert.equal(0, sb:stats().old_refresh_used)
    end)

    it("refuses a flag that is not 1 or 0 and a token_type that is not a word", function()
      local opts = { cafile = sb.cafile, headers = sb:control_headers() }
      assert.equal(400, (helpers.http("POST", sb:url("/_sandbox/config?refresh_keeps=yes"), opts)))
      assert.equal(400, (helpers.http("POST", sb:url("/_sandbox/config?token_type=a%20b"), opts)))
      assert.same({ token_type = "bearer", no429headers = false, expires_in_number = false, refresh_keeps = false,
                    mandatory_filters = false }, sb:stats().options)
    end)
  end)

  describe("token faults", function()
    it("rotate_error: the refresh spends the old token but answers 503 carrying only the new one", function()
      local t = sb:tokens()
      sb:advance(575)
      sb:fault("rotate_error", 1, { scope = "token" })
      local status, body = sb:refresh(t.refresh_token)
      assert.equal(503, status)
      assert.equal("temporarily_unavailable", body.error)
      assert.is_nil(body.access_token)
      assert.truthy(body.refresh_token:find("!", 1, true))
      assert.are_not.equal(t.refresh_token, body.refresh_token)
      -- the old one is dead; the one in the error answer carries the chain on
      assert.equal(401, (sb:refresh(t.refresh_token)))
      sb:advance(575)
      assert.equal(200, (sb:refresh(body.refresh_token)))
      -- only the token endpoint has it
      assert.equal(400, (helpers.http("POST", sb:url("/_sandbox/fault?kind=rotate_error"), { cafile = sb.cafile,
        headers = sb:control_headers() })))
    end)

    it("can make the token endpoint answer an HTML 503", function()
      sb:fault("html503", 1, { scope = "token" })
      local status, body = sb:exchange()
      assert.equal(503, status)
      assert.equal("string", type(body))
      assert.truthy(body:find("<html", 1, true))
      assert.equal(200, (sb:exchange()))
    end)
  end)
end)
