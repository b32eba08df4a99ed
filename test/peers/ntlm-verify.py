#!/usr/bin/python3
# NTLM for the fake EWS server, done by impacket (Debian python3-impacket), so the package's
# own NTLM code is checked against an independent implementation. A long-lived child process:
# one JSON object per line in, one per line out, answers carry the request's "id".
#   {"id", "op": "challenge", "type1": b64, "domain": "CONTOSO", "server": "EXCH01"}
#     -> {"id", "type2": b64, "challenge": b64}
#   {"id", "op": "verify", "type1": b64, "type2": b64, "type3": b64,
#    "accounts": [{"username", "domain", "password"}]}
#     -> {"id", "ok": true, "username", "domain", "workstation"} | {"id", "ok": false, "reason"}
# Only NTLMv2 is accepted: an NTLMv1 (24-byte) or LM-only response is refused, as a server
# with LmCompatibilityLevel 5 does.
import base64
import calendar
import hmac
import json
import os
import struct
import sys
import time

from impacket import ntlm

# a Windows FILETIME is 100 ns ticks since 1601
FILETIME_EPOCH = 116444736000000000
# MS-NLMP leaves the tolerance to the server; Windows uses 36 hours (MaxLifetimeForNtlmv2)
MAX_CLOCK_SKEW_TICKS = 36 * 3600 * 10000000


def filetime_now():
    return FILETIME_EPOCH + calendar.timegm(time.gmtime()) * 10000000


def make_challenge(request):
    negotiate = ntlm.NTLMAuthNegotiate()
    negotiate.fromString(base64.b64decode(request["type1"]))
    asked = negotiate["flags"]
    # answer only what the client asked for, plus what a server always sets (as impacket's SMB server does)
    flags = 0
    for flag in (ntlm.NTLMSSP_NEGOTIATE_56, ntlm.NTLMSSP_NEGOTIATE_128, ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH,
                 ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY, ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN,
                 ntlm.NTLMSSP_NEGOTIATE_SIGN, ntlm.NTLMSSP_NEGOTIATE_SEAL):
        if asked & flag:
            flags |= flag
    flags |= ntlm.NTLMSSP_NEGOTIATE_UNICODE if asked & ntlm.NTLMSSP_NEGOTIATE_UNICODE else ntlm.NTLM_NEGOTIATE_OEM
    flags |= ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO | ntlm.NTLMSSP_TARGET_TYPE_DOMAIN | ntlm.NTLMSSP_NEGOTIATE_NTLM | ntlm.NTLMSSP_REQUEST_TARGET
    encoding = "utf-16le" if flags & ntlm.NTLMSSP_NEGOTIATE_UNICODE else "latin-1"
    domain = request.get("domain") or "CONTOSO"
    server = request.get("server") or "EXCH01"
    av_pairs = ntlm.AV_PAIRS()
    av_pairs[ntlm.NTLMSSP_AV_DOMAINNAME] = domain.encode("utf-16le")
    av_pairs[ntlm.NTLMSSP_AV_HOSTNAME] = server.encode("utf-16le")
    av_pairs[ntlm.NTLMSSP_AV_DNS_DOMAINNAME] = (domain.lower() + ".local").encode("utf-16le")
    av_pairs[ntlm.NTLMSSP_AV_DNS_HOSTNAME] = (server.lower() + "." + domain.lower() + ".local").encode("utf-16le")
    av_pairs[ntlm.NTLMSSP_AV_TIME] = struct.pack("<q", filetime_now())
    server_challenge = os.urandom(8)
    target = domain.encode(encoding)
    challenge = ntlm.NTLMAuthChallenge()
    challenge["flags"] = flags
    challenge["domain_len"] = len(target)
    challenge["domain_max_len"] = len(target)
    challenge["domain_offset"] = 40 + 16
    challenge["challenge"] = server_challenge
    challenge["domain_name"] = target
    challenge["TargetInfoFields_len"] = len(av_pairs)
    challenge["TargetInfoFields_max_len"] = len(av_pairs)
    challenge["TargetInfoFields"] = av_pairs
    challenge["TargetInfoFields_offset"] = 40 + 16 + len(target)
    challenge["Version"] = b"\x0a\x00\x63\x45\x00\x00\x00\x0f"  # Windows 10.0.17763, NTLM revision 15
    challenge["VersionLen"] = 8
    flags |= ntlm.NTLMSSP_NEGOTIATE_VERSION
    challenge["flags"] = flags
    return {"type2": base64.b64encode(challenge.getData()).decode("ascii"), "challenge": base64.b64encode(server_challenge).decode("ascii")}


def decode_name(raw, flags):
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    return raw.decode("utf-16le" if flags & ntlm.NTLMSSP_NEGOTIATE_UNICODE else "latin-1")


def verify(request):
    type2 = ntlm.NTLMAuthChallenge()
    type2.fromString(base64.b64decode(request["type2"]))
    server_challenge = type2["challenge"]
    authenticate = ntlm.NTLMAuthChallengeResponse()
    authenticate.fromString(base64.b64decode(request["type3"]))
    flags = authenticate["flags"] or type2["flags"]
    username = decode_name(authenticate["user_name"], flags)
    domain = decode_name(authenticate["domain_name"], flags)
    workstation = decode_name(authenticate["host_name"], flags)
    nt_response = authenticate["ntlm"]
    if isinstance(nt_response, str):
        nt_response = nt_response.encode("latin-1")
    if not username:
        return {"ok": False, "reason": "anonymous NTLM logon refused"}
    if len(nt_response) == 0:
        return {"ok": False, "reason": "LM-only response refused (NTLMv2 required)", "username": username}
    if len(nt_response) == 24:
        return {"ok": False, "reason": "NTLMv1 response refused (NTLMv2 required)", "username": username}
    if len(nt_response) < 16 + 28:
        return {"ok": False, "reason": "malformed NTLMv2 response", "username": username}
    account = None
    for candidate in request.get("accounts", []):
        if candidate["username"].lower() == username.lower() and candidate["domain"].lower() == domain.lower():
            account = candidate
            break
    if account is None:
        return {"ok": False, "reason": "unknown user %s\\%s" % (domain, username), "username": username}
    nt_proof = nt_response[:16]
    blob = nt_response[16:]
    if blob[0:2] != b"\x01\x01":
        return {"ok": False, "reason": "not an NTLMv2 blob", "username": username}
    # the key is made from the names exactly as the client sent them (MS-NLMP 3.3.2)
    response_key = ntlm.NTOWFv2(username, account["password"], domain)
    expected = hmac.new(response_key, server_challenge + blob, "md5").digest()
    if not hmac.compare_digest(expected, nt_proof):
        return {"ok": False, "reason": "wrong password", "username": username}
    (client_time,) = struct.unpack("<q", blob[8:16])
    if abs(filetime_now() - client_time) > MAX_CLOCK_SKEW_TICKS:
        return {"ok": False, "reason": "NTLMv2 timestamp outside the allowed clock skew", "username": username}
    return {"ok": True, "username": account["username"], "domain": account["domain"], "workstation": workstation}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = {}
        try:
            request = json.loads(line)
            if request.get("op") == "challenge":
                answer = make_challenge(request)
            elif request.get("op") == "verify":
                answer = verify(request)
            elif request.get("op") == "ping":
                answer = {"ok": True}
            else:
                answer = {"error": "unknown op %r" % request.get("op")}
        except Exception as error:  # a malformed message must not end the verifier
            answer = {"ok": False, "error": "%s: %s" % (type(error).__name__, error), "reason": "malformed NTLM message"}
        answer["id"] = request.get("id")
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
