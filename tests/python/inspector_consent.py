"""Plays the person in the browser for the Inspector's OAuth login (scripts/inspector-oauth).

usage: python inspector_consent.py TTY_LOG
Waits for the authorization URL the Inspector prints into TTY_LOG, signs in to the sandbox as the
demo tenant's admin, allows every scope offered, and follows the redirect to the Inspector's
callback, as a browser would. Standard library only.
"""
import html
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def inputs(page, kinds):
    pattern = r'<input type="(?:%s)" name="([^"]+)" value="([^"]*)"' % "|".join(kinds)
    return [(html.unescape(n), html.unescape(v)) for n, v in re.findall(pattern, page)]


deadline = time.time() + 60
url = None
while url is None and time.time() < deadline:
    try:
        text = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
    except FileNotFoundError:
        text = ""
    found = re.search(r"(https?://[^\s\x07\x1b]+/oauth/authorize\?[A-Za-z0-9%&=_.~+\-]+)", text)
    url = found.group(1) if found else None
    time.sleep(0.3)
if url is None:
    raise SystemExit("FAILED: the Inspector printed no authorization URL")
print("ok  the Inspector asked to authorize at the sandbox")
browser = urllib.request.build_opener(NoRedirect)
origin = url.split("/oauth/authorize")[0]
page = browser.open(url).read().decode()
admin = re.search(r'name="user" value="([^"]+)"[^>]*>[^<]*admin</label>', page).group(1)
query = urllib.parse.urlencode(inputs(page, ["hidden"]) + [("user", admin)])
page = browser.open(f"{origin}/oauth/authorize?{query}").read().decode()
form = urllib.parse.urlencode(inputs(page, ["hidden", "checkbox"]) + [("decision", "allow")]).encode()
try:
    browser.open(urllib.request.Request(f"{origin}/oauth/authorize", data=form, method="POST"))
    raise SystemExit("FAILED: the consent form did not redirect")
except urllib.error.HTTPError as redirect:
    location = redirect.headers["Location"]
if "code=" not in location:
    raise SystemExit(f"FAILED: the redirect carries no code: {location}")
print("ok  signed in as the admin and allowed")
urllib.request.urlopen(location).read()
print("ok  the Inspector's callback got the code")
