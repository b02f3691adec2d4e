-- The sandbox's REST API: Bearer, Accept, Me, Divisions, crm/Accounts paging and query options,
-- bulk/ and sync/, writes, wrong division.
local helpers = require "helpers"

describe("sandbox REST API", function()
  local sb = helpers.use_sandbox{ accounts = 250 }
  local token, div
  before_each(function()
    div, token = sb.division, sb:tokens().access_token
  end)

  local function accounts_path(q)
    return "/api/v1/" .. div .. "/crm/Accounts" .. (q and ("?" .. q) or "")
  end

  describe("Bearer", function()
    it("is required", function()
      local status, body = sb:api("GET", "/api/v1/current/Me", nil)
      assert.equal(401, status)
      assert.equal("Unauthorized", body.error.message.value)
      assert.equal(1, sb:stats().unauthorized)
    end)

    it("must be known", function()
      assert.equal(401, (sb:api("GET", "/api/v1/current/Me", "stampNL001.madeup")))
    end)

    it("lives 600 s of sandbox time", function()
      sb:advance(590)
      assert.equal(200, (sb:api("GET", "/api/v1/current/Me", token)))
      sb:advance(10)
      assert.equal(401, (sb:api("GET", "/api/v1/current/Me", token)))
    end)

    it("from a refresh works, and the refreshed chain's new token is fresh", function()
      local t = sb:tokens()
      sb:advance(595)
      local status, t2 = sb:refresh(t.refresh_token)
      assert.equal(200, status)
      assert.equal(200, (sb:api("GET", "/api/v1/current/Me", t.access_token)))
      sb:advance(10)
      assert.equal(401, (sb:api("GET", "/api/v1/current/Me", t.access_token)))
      assert.equal(200, (sb:api("GET", "/api/v1/current/Me", t2.access_token)))
    end)
  end)

  it("answers Atom XML without Accept: application/json", function()
    local status, headers, body = helpers.http("GET", sb:url(accounts_path("$top=2")), {
      cafile = sb.cafile, headers = { Authorization = "Bearer " .. token } })
    assert.equal(200, status)
    assert.truthy(headers["content-type"]:find("application/atom+xml", 1, true))
    assert.truthy(body:find("<feed", 1, true))
    assert.truthy(body:find("<m:properties>", 1, true))
  end)

  it("current/Me tells the current division", function()
    local status, body, h = sb:api("GET", "/api/v1/current/Me", token)
    assert.equal(200, status)
    local me = body.d.results[1]
    assert.equal(div, me.CurrentDivision)
    assert.is_string(me.FullName)
    assert.is_string(me.UserName)
    assert.is_string(me.Email)
    assert.truthy(h["content-type"]:find("application/json", 1, true))
  end)

  it("current/Me honours $select", function()
    local _, body = sb:api("GET", "/api/v1/current/Me?$select=CurrentDivision", token)
    assert.equal(div, body.d.results[1].CurrentDivision)
    assert.is_nil(body.d.results[1].FullName)
  end)

  it("system/Divisions lists the user's divisions", function()
    local status, body = sb:api("GET", "/api/v1/" .. div .. "/system/Divisions", token)
    assert.equal(200, status)
    assert.equal(2, #body.d.results)
    assert.equal(div, body.d.results[1].Code)
  end)

  it("answers 403 WrongDivision for a division the user has not", function()
    local status, body, _, raw = sb:api("GET", "/api/v1/1234/crm/Accounts", token)
    assert.equal(403, status)
    assert.equal("Forbidden - WrongDivision", body.error.message.value)
    assert.equal("", body.error.code)
    assert.equal("", body.error.message.lang)
    assert.truthy(raw:find('"error"', 1, true))
  end)

  it("answers 404 with the error envelope for an unknown path", function()
    local status, body = sb:api("GET", "/api/v1/" .. div .. "/crm/Nonsense", token)
    assert.equal(404, status)
    assert.is_string(body.error.message.value)
  end)

  describe("crm/Accounts", function()
    it("pages by 60 with an absolute __next that keeps $select and $filter", function()
      local seen, pages = {}, 0
      local url = accounts_path("$select=ID,Name,Code&$filter=" .. helpers.escape("Status eq 'C'"))
      local total_c = 0
      while url do
        local status, body = sb:api("GET", url, token)
        assert.equal(200, status)
        pages = pages + 1
        for _, r in ipairs(body.d.results) do
          assert.is_nil(seen[r.ID])
          seen[r.ID] = true
          total_c = total_c + 1
          assert.is_nil(r.City)
          assert.equal(18, #r.Code)
        end
        url = body.d.__next
        if url then
          assert.equal(60, #body.d.results)
          local prefix = sb.base_url .. "/api/v1/" .. div .. "/crm/Accounts?"
          assert.equal(prefix, url:sub(1, #prefix))
          local q = helpers.query(url)
          assert.equal("ID,Name,Code", q["$select"])
          assert.equal("Status eq 'C'", q["$filter"])
          assert.truthy(q["$skiptoken"]:match("^guid'.+'$"))
        end
      end
      -- every 7th account is suspended (Status S)
      assert.equal(250 - math.floor(250 / 7), total_c)
      assert.equal(math.ceil(total_c / 60), pages)
    end)

    it("has non-ASCII names, 18-character codes and /Date(ms)/ dates", function()
      local _, body = sb:api("GET", accounts_path(), token)
      local r = body.d.results[1]
      assert.truthy(r.Created:match("^/Date%(%d+%)/$"))
      assert.truthy(r.Modified:match("^/Date%(%d+%)/$"))
      assert.truthy(r.ID:match("^%x+%-%x+%-%x+%-%x+%-%x+$"))
      assert.is_nil(r.Timestamp)
      local _, b2 = sb:api("GET", accounts_path("$filter=" .. helpers.escape("Name eq 'Bäckerei Müller'")), token)
      assert.equal(1, #b2.d.results)
      assert.equal("                 1", b2.d.results[1].Code)
    end)

    it("filters on strings with '' escapes, guids and padded codes, combined with and/or", function()
      local _, b = sb:api("GET", accounts_path("$filter=" .. helpers.escape("Name eq 'O''Brien & Zonen'")), token)
      assert.equal(1, #b.d.results)
      local id = b.d.results[1].ID
      local _, b2 = sb:api("GET", accounts_path("$filter=" .. helpers.escape("ID eq guid'" .. id .. "'")), token)
      assert.equal(1, #b2.d.results)
      assert.equal("O'Brien & Zonen", b2.d.results[1].Name)
      local _, b3 = sb:api("GET", accounts_path("$filter=" .. helpers.escape("Code eq '                21'")), token)
      assert.equal(id, b3.d.results[1].ID)
      local _, b4 = sb:api("GET", accounts_path("$filter=" .. helpers.escape(
        "(Code eq '                 1' or Code eq '                 2') and Status eq 'C'")), token)
      assert.equal(2, #b4.d.results)
      local _, b5 = sb:api("GET", accounts_path("$filter=" .. helpers.escape("Name eq 'nobody'")), token)
      assert.same({}, b5.d.results)
    end)

    it("rejects an unknown property in $filter or $select with 400", function()
      assert.equal(400, (sb:api("GET", accounts_path("$filter=" .. helpers.escape("Foo eq 'x'")), token)))
      assert.equal(400, (sb:api("GET", accounts_path("$select=ID,Foo"), token)))
    end)

    it("honours $top", function()
      local _, body = sb:api("GET", accounts_path("$top=5"), token)
      assert.equal(5, #body.d.results)
      assert.is_nil(body.d.__next)
    end)

    it("gets one account by key", function()
      local _, list = sb:api("GET", accounts_path("$top=1"), token)
      local id = list.d.results[1].ID
      local status, body = sb:api("GET", "/api/v1/" .. div .. "/crm/Accounts(guid'" .. id .. "')", token)
      assert.equal(200, status)
      assert.equal(id, body.d.ID)
    end)

    it("POST creates (201 {d:{…}}), PUT updates (204), DELETE removes (204)", function()
      local status, body, h, raw = sb:api("POST", accounts_path(), token, {
        body = { Name = "Nieuwe Klant – Ærø", City = "Utrecht" } })
      assert.equal(201, status)
      local id = body.d.ID
      assert.equal("Nieuwe Klant – Ærø", body.d.Name)
      assert.equal(18, #body.d.Code)
      assert.truthy(raw:find('^{"d":{'))
      assert.truthy(h.location:find(id, 1, true))
      local key = "/api/v1/" .. div .. "/crm/Accounts(guid'" .. id .. "')"
      local s2, _, _, raw2 = sb:api("PUT", key, token, { body = { City = "Zwolle" } })
      assert.equal(204, s2)
      assert.equal("", raw2)
      local _, got = sb:api("GET", key, token)
      assert.equal("Zwolle", got.d.City)
      local s3, _, _, raw3 = sb:api("DELETE", key, token)
      assert.equal(204, s3)
      assert.equal("", raw3)
      assert.equal(404, (sb:api("GET", key, token)))
    end)

    it("POST without a Name is a 400 error envelope", function()
      local status, body = sb:api("POST", accounts_path(), token, { body = { City = "X" } })
      assert.equal(400, status)
      assert.is_string(body.error.message.value)
    end)
  end)

  describe("bulk/CRM/Accounts", function()
    it("requires $select", function()
      local status, body = sb:api("GET", "/api/v1/" .. div .. "/bulk/CRM/Accounts", token)
      assert.equal(400, status)
      assert.truthy(body.error.message.value:find("$select", 1, true))
    end)

    it("answers up to 1000 rows a page", function()
      local status, body = sb:api("GET", "/api/v1/" .. div .. "/bulk/CRM/Accounts?$select=ID,Name", token)
      assert.equal(200, status)
      assert.equal(250, #body.d.results)
      assert.is_nil(body.d.__next)
    end)
  end)

  describe("sync/CRM/Accounts", function()
    it("carries Timestamp and filters Timestamp gt N; an update gets a larger Timestamp", function()
      local path = "/api/v1/" .. div .. "/sync/CRM/Accounts?$select=ID,Name,Timestamp&$filter=" ..
        helpers.escape("Timestamp gt 1")
      local status, body = sb:api("GET", path, token)
      assert.equal(200, status)
      assert.equal(250, #body.d.results)
      local max, any = 0, body.d.results[1]
      for _, r in ipairs(body.d.results) do
        assert.is_number(r.Timestamp)
        assert.truthy(r.Timestamp > max)
        max = r.Timestamp
      end
      local _, none = sb:api("GET", "/api/v1/" .. div .. "/sync/CRM/Accounts?$select=ID,Timestamp&$filter=" ..
        helpers.escape("Timestamp gt " .. max), token)
      assert.equal(0, #none.d.results)
      assert.equal(204, (sb:api("PUT", "/api/v1/" .. div .. "/crm/Accounts(guid'" .. any.ID .. "')", token,
        { body = { Phone = "+31 6 1234" } })))
      local _, changed = sb:api("GET", "/api/v1/" .. div .. "/sync/CRM/Accounts?$select=ID,Timestamp&$filter=" ..
        helpers.escape("Timestamp gt " .. max), token)
      assert.equal(1, #changed.d.results)
      assert.equal(any.ID, changed.d.results[1].ID)
      assert.truthy(changed.d.results[1].Timestamp > max)
    end)
  end)
end)
