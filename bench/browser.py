#!/usr/bin/env python3
"""Sign in through jitproxy's login page like a browser, for bench/ssh.sh and bench/pg.sh.

usage: browser.py URL USERNAME PASSWORD

GETs the URL that `jitproxy login --no-browser` printed (it redirects to the
dev identity provider's login form), fills in the form's hidden fields plus
username and password, posts it, and follows the redirects back to the
CLI's loopback listener. Exits non-zero if the last page does not say the
login was received.
"""
import html
import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request


def main():
    url, user, password = sys.argv[1:4]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    r = opener.open(url, timeout=30)
    page = r.read().decode("utf-8", "replace")
    m = re.search(r'<form[^>]*action="([^"]*)"', page)
    if not m:
        sys.exit("browser.py: no form on %s:\n%s" % (r.geturl(), page[:500]))
    action = urllib.parse.urljoin(r.geturl(), html.unescape(m.group(1)))
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'\bname="([^"]+)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if name and value:
            fields[name.group(1)] = html.unescape(value.group(1))
    fields.update(username=user, password=password, action="signin")
    r = opener.open(action, urllib.parse.urlencode(fields).encode(), timeout=30)
    page = r.read().decode("utf-8", "replace")
    if "Login received" not in page and "close this" not in page.lower():
        sys.exit("browser.py: after signing in the browser shows:\n%s" % page[:500])


if __name__ == "__main__":
    main()
