"""Writes positives.txt: fake secrets of documented token formats in realistic file contexts.

The formats are facts from the providers' and public scanners' documentation (prefix, length,
alphabet); the values are random (seeded), the contexts are written here: env files, shell
history, YAML/JSON/TOML/INI config, code, curl commands, markdown prose, logs. Every case names
the family it belongs to, the rule expected to redact it and the secret text that must disappear.

    python3 host/curate/tests/secrets-corpus/make_corpus.py   (rewrites positives.txt)

negatives.txt (harmless look-alikes) is written by hand.
"""
import base64
import os
import random
import string
import uuid as uuidlib

R = random.Random(16)
UP = string.ascii_uppercase
LO = string.ascii_lowercase
DIG = string.digits
B62 = UP + LO + DIG
B64 = B62 + "+/"
URL = B62 + "-_"
HEX = "0123456789abcdef"
BAD = ("example", "xxxx", "your", "dummy", "sample", "lorem", "redacted", "changeme", "insert", "replace", "fake",
       "1234567890", "abcdefgh", "0000000000", "placeholder")


def rnd(alphabet, n):
    while True:
        s = "".join(R.choice(alphabet) for _ in range(n))
        if any(b in s.lower() for b in BAD):
            continue
        if any(c in DIG for c in alphabet) and not any(c in DIG for c in s):
            continue
        return s


def uuid():
    return str(uuidlib.UUID(int=R.getrandbits(128), version=4))


def b64(n_bytes):
    return base64.b64encode(bytes(R.getrandbits(8) for _ in range(n_bytes))).decode()


cases = []


def add(family, rule, secret, text):
    assert secret in text, (rule, secret, text)
    assert " " not in secret and "\n" not in secret
    cases.append((family, rule, secret, text.strip("\n")))


def contexts(name, value, kind="token"):
    """The same value in the places people put such values."""
    lower = name.lower()
    return [
        f"{name}={value}",
        f"$ export {name}=\"{value}\"\n$ ./deploy.sh --env staging",
        f"services:\n  worker:\n    image: registry.internal/worker:1.4\n    environment:\n      {name}: {value}\n      LOG_LEVEL: info",
        f'{{\n  "region": "eu-west-1",\n  "{lower}": "{value}",\n  "retries": 3\n}}',
        f"[deploy]\nregion = \"eu-west-1\"\n{lower} = \"{value}\"",
        f"I rotated the {kind} this morning; the old one was {value} in case you need to check the audit log.",
        f"client = Client(\n    {lower}=\"{value}\",\n    timeout=30,\n)",
        f"docker run --rm -e {name}={value} -p 8080:8080 ghcr.io/acme/api:latest",
        f"const {lower.replace('_', '')} = '{value}';\nmodule.exports = {{ {lower.replace('_', '')} }};",
        f"2024-05-02T10:14:07Z DEBUG http: sending request with {kind} {value} to upstream",
    ]


def p(family, rule, name, make, n=5, kind="token"):
    for i in R.sample(range(10), n):
        s = make()
        add(family, rule, s, contexts(name, s, kind)[i])


# ------------------------------------------------------------------ cloud
p("cloud", "aws-access-key-id", "AWS_ACCESS_KEY_ID", lambda: R.choice(["AKIA", "ASIA"]) + rnd("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), 6, "access key")
for k in range(6):
    s = rnd(B64, 40)
    t = [f"aws configure set aws_secret_access_key {s}", f"| key | value |\n|---|---|\n| AWS secret access key | {s} |"][k] if k < 2 else R.choice([
        f"[default]\naws_access_key_id = AKIA{rnd('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}\naws_secret_access_key = {s}\nregion = us-east-1",
        f"export AWS_SECRET_ACCESS_KEY={s}",
        f'"AWS": {{\n  "SecretAccessKey": "{s}"\n}}',
        f"aws configure set aws_secret_access_key {s}",
        f"| key | value |\n|---|---|\n| AWS secret access key | {s} |",
    ])
    add("cloud", "aws-secret-near" if t.startswith(("aws configure", "| key")) else "aws-secret-access-key", s, t)
p("cloud", "gcp-oauth-client-secret", "GOOGLE_CLIENT_SECRET", lambda: "GOCSPX-" + rnd(URL, 28), 3, "client secret")
p("cloud", "google-api-key", "GOOGLE_API_KEY", lambda: "AIza" + rnd(URL, 35), 5, "key")
for _ in range(3):
    kid = rnd(HEX, 40)
    body = "\\n".join(b64(48) for _ in range(6))
    add("cloud", "gcp-private-key-id", kid,
        f'{{\n  "type": "service_account",\n  "project_id": "billing-prod-4821",\n  "private_key_id": "{kid}",\n'
        f'  "private_key": "-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n",\n  "client_email": "ci@billing-prod-4821.iam.gserviceaccount.com"\n}}')
for _ in range(4):
    k = b64(64)
    t = R.choice([
        f"DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={k};EndpointSuffix=core.windows.net",
        f'"storageAccountKey": "{k}"',
        f"AZURE_STORAGE_KEY={k}",
    ])
    add("cloud", "azure-storage-key", k, t)
for _ in range(4):
    s = rnd(URL, 3) + R.choice("78") + "Q~" + rnd(URL + "~.", 34)
    add("cloud", "azure-client-secret", s, R.choice([f"AZURE_CLIENT_SECRET={s}", f'"clientSecret": "{s}",', f"az login --service-principal -u $APP_ID -p {s} --tenant $TENANT"]))
p("cloud", "digitalocean-token", "DIGITALOCEAN_TOKEN", lambda: R.choice(["dop", "doo", "dor"]) + "_v1_" + rnd(HEX, 64), 4)
p("cloud", "alibaba-access-key-id", "ALIBABA_CLOUD_ACCESS_KEY_ID", lambda: "LTAI" + rnd(B62, 20), 3, "access key")
for _ in range(4):
    u = uuid()
    add("cloud", "heroku-api-key", u, R.choice([
        f"HEROKU_API_KEY={u}", f"heroku_api_key = \"{u}\"", f"# heroku\nexport API_KEY={u}",
        f"[heroku]\napi_key = {u}", f"machine api.heroku.com\n  login me@acme.io\n  password {u}"]))
add("cloud", "heroku-api-key", (h := "HRKU-AA" + rnd(URL, 58)), f"HEROKU_API_KEY={h}")
for _ in range(4):
    k = R.choice([rnd(HEX, 37), rnd(URL, 40)])
    add("cloud", "cloudflare-api-key", k, R.choice([f"CLOUDFLARE_API_KEY={k}", f"cloudflare:\n  api_token: {k}", f"# Cloudflare token for DNS updates\ntoken = \"{k}\""]))
p("cloud", "supabase-token", "SUPABASE_ACCESS_TOKEN", lambda: "sbp_" + rnd(HEX, 40), 3)
p("cloud", "planetscale-token", "PLANETSCALE_TOKEN", lambda: "pscale_" + R.choice(["pw", "tkn", "oauth"]) + "_" + rnd(URL, 43), 3)
p("cloud", "vault-token", "VAULT_TOKEN", lambda: "hvs." + rnd(URL, 91), 3)
p("cloud", "terraform-cloud-token", "TFE_TOKEN", lambda: rnd(B62, 14) + ".atlasv1." + rnd(URL, 67), 3)
p("cloud", "pulumi-token", "PULUMI_ACCESS_TOKEN", lambda: "pul-" + rnd(HEX, 40), 3)
p("cloud", "doppler-token", "DOPPLER_TOKEN", lambda: "dp." + R.choice(["pt", "st"]) + "." + rnd(B62, 43), 3)
p("cloud", "fly-token", "FLY_API_TOKEN", lambda: "fo1_" + rnd(URL, 43), 2)

# ------------------------------------------------------------------ VCS, CI
p("vcs-ci", "github-token", "GITHUB_TOKEN", lambda: R.choice(["ghp", "gho", "ghu", "ghs", "ghr"]) + "_" + rnd(B62, 36), 8)
for _ in range(3):
    s = "ghp_" + rnd(B62, 36)
    add("vcs-ci", "github-token", s, R.choice([f"git remote set-url origin https://deploy:{s}@github.com/acme/api.git",
                                               f"https://oauth2:{s}@github.com/acme/infra"]))
p("vcs-ci", "github-fine-grained-pat", "GH_TOKEN", lambda: "github_pat_" + rnd(B62, 22) + "_" + rnd(B62, 59), 4)
p("vcs-ci", "gitlab-token", "GITLAB_TOKEN", lambda: R.choice(["glpat-", "gldt-", "glrt-", "glcbt-"]) + rnd(URL, 20), 6)
p("vcs-ci", "gitlab-token", "CI_TRIGGER_TOKEN", lambda: "glptt-" + rnd(HEX, 40), 2)
p("vcs-ci", "gitlab-token", "REGISTRATION_TOKEN", lambda: "GR1348941" + rnd(URL, 20), 2)
p("vcs-ci", "bitbucket-token", "BITBUCKET_APP_PASSWORD", lambda: "ATBB" + rnd(B62, 32), 3, "app password")
p("vcs-ci", "bitbucket-token", "ATLASSIAN_API_TOKEN", lambda: "ATATT3xFfGF0" + rnd(URL, 180) + "=" + rnd(HEX, 8).upper(), 3)
for _ in range(4):
    s = rnd(B62, 24)
    add("vcs-ci", "atlassian-api-token", s, R.choice([f"JIRA_API_TOKEN={s}", f"jira:\n  url: https://acme.atlassian.net\n  token: {s}", f"confluence_password = \"{s}\"", f"BITBUCKET_TOKEN={s}"]))
p("vcs-ci", "circleci-token", "CIRCLECI_TOKEN", lambda: "CCIPAT_" + rnd(B62, 22) + "_" + rnd(HEX, 40), 3)
for svc, make in [("CIRCLE_TOKEN", lambda: rnd(HEX, 40)), ("TRAVIS_TOKEN", lambda: rnd(B62, 22)), ("VERCEL_TOKEN", lambda: rnd(B62, 24)),
                  ("NETLIFY_AUTH_TOKEN", lambda: rnd(URL, 43)), ("CODECOV_TOKEN", uuid)]:
    for i in R.sample([0, 1, 2, 3, 4, 7], 2):
        s = make()
        add("vcs-ci", "ci-token-near", s, contexts(svc, s)[i])
p("vcs-ci", "buildkite-token", "BUILDKITE_AGENT_TOKEN", lambda: "bkua_" + rnd(HEX, 40), 2)
p("vcs-ci", "netlify-token", "NETLIFY_AUTH_TOKEN", lambda: "nfp_" + rnd(B62, 36), 2)
p("vcs-ci", "sonarqube-token", "SONAR_TOKEN", lambda: R.choice(["squ_", "sqp_", "sqa_"]) + rnd(HEX, 40), 3)

# ------------------------------------------------------------------ chat, messaging, mail
p("chat-mail", "slack-token", "SLACK_BOT_TOKEN", lambda: f"xox{R.choice('bpas')}-{rnd(DIG, 12)}-{rnd(DIG, 13)}-{rnd(B62, 24)}", 6)
p("chat-mail", "slack-token", "SLACK_APP_TOKEN", lambda: f"xapp-1-A{rnd(UP + DIG, 10)}-{rnd(DIG, 13)}-{rnd(HEX, 64)}", 2)
p("chat-mail", "slack-token", "SLACK_CONFIG_TOKEN", lambda: f"xoxe.xoxp-1-{rnd(B62, 140)}", 2)
for _ in range(4):
    h = f"services/T{rnd(UP + DIG, 8)}/B{rnd(UP + DIG, 10)}/{rnd(B62, 24)}"
    add("chat-mail", "slack-webhook", h, R.choice([f"SLACK_WEBHOOK_URL=https://hooks.slack.com/{h}",
                                                  f"curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"deployed\"}}' https://hooks.slack.com/{h}",
                                                  f"notify:\n  slack: https://hooks.slack.com/{h}"]))
for _ in range(4):
    s = R.choice("MNO") + rnd(URL, 25) + "." + rnd(URL, 6) + "." + rnd(URL, 38)
    add("chat-mail", "discord-bot-token", s, R.choice([f"DISCORD_BOT_TOKEN={s}", f"client.run('{s}')", f"discord:\n  token: \"{s}\"", f"Authorization: Bot {s}"]))
for _ in range(3):
    s = rnd(URL, 68)
    add("chat-mail", "discord-webhook", s, R.choice([f"DISCORD_WEBHOOK=https://discord.com/api/webhooks/{rnd(DIG, 19)}/{s}",
                                                    f"webhook_url = \"https://discordapp.com/api/webhooks/{rnd(DIG, 18)}/{s}\""]))
p("chat-mail", "telegram-bot-token", "TELEGRAM_BOT_TOKEN", lambda: f"{R.randint(10**8, 10**10 - 1)}:AA{rnd(URL, 33)}", 4)
for _ in range(3):
    s = f"{uuid()}@{uuid()}/IncomingWebhook/{rnd(HEX, 32)}/{uuid()}"
    add("chat-mail", "teams-webhook", s, f"TEAMS_WEBHOOK=https://acme.webhook.office.com/webhookb2/{s}")
p("chat-mail", "twilio-api-key", "TWILIO_API_KEY", lambda: "SK" + rnd(HEX, 32), 3, "API key")
for _ in range(3):
    s = rnd(HEX, 32)
    add("chat-mail", "twilio-api-key", s, R.choice([f"TWILIO_AUTH_TOKEN={s}", f"twilio:\n  account_sid: AC{rnd(HEX, 32)}\n  auth_token: {s}"]))
p("chat-mail", "sendgrid-api-key", "SENDGRID_API_KEY", lambda: "SG." + rnd(URL, 22) + "." + rnd(URL, 43), 4, "API key")
p("chat-mail", "mailgun-api-key", "MAILGUN_API_KEY", lambda: "key-" + rnd(HEX, 32), 3, "API key")
p("chat-mail", "mailgun-api-key", "MAILGUN_SIGNING_KEY", lambda: rnd(HEX, 32) + "-" + rnd(HEX, 8) + "-" + rnd(HEX, 8), 2, "signing key")
p("chat-mail", "mailchimp-api-key", "MAILCHIMP_API_KEY", lambda: rnd(HEX, 32) + "-us" + str(R.randint(1, 21)), 3, "API key")
p("chat-mail", "postmark-token", "POSTMARK_SERVER_TOKEN", uuid, 2)

# ------------------------------------------------------------------ payment
p("payment", "stripe-secret-key", "STRIPE_SECRET_KEY", lambda: R.choice(["sk_live_", "rk_live_", "sk_test_"]) + rnd(B62, R.choice([24, 99])), 7, "key")
p("payment", "stripe-secret-key", "STRIPE_WEBHOOK_SECRET", lambda: "whsec_" + rnd(B62, 32), 2, "signing secret")
p("payment", "square-token", "SQUARE_ACCESS_TOKEN", lambda: R.choice(["sq0atp-" + rnd(URL, 22), "EAAA" + rnd(URL, 60)]), 4)
p("payment", "square-token", "SQUARE_OAUTH_SECRET", lambda: "sq0csp-" + rnd(URL, 43), 2)
p("payment", "braintree-token", "BRAINTREE_ACCESS_TOKEN", lambda: f"access_token$production${rnd(LO + DIG, 16)}${rnd(HEX, 32)}", 3)
p("payment", "shopify-token", "SHOPIFY_ACCESS_TOKEN", lambda: R.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + rnd(HEX, 32), 5)
p("payment", "flutterwave-key", "FLW_SECRET_KEY", lambda: "FLWSECK_TEST-" + rnd("abcdefgh0123456789", 32) + "-X", 2, "key")
p("payment", "razorpay-key", "RAZORPAY_KEY_ID", lambda: "rzp_live_" + rnd(B62, 14), 2, "key")
p("payment", "plaid-access-token", "PLAID_ACCESS_TOKEN", lambda: "access-production-" + uuid(), 2)

# ------------------------------------------------------------------ package registries
p("registry", "npm-token", "NPM_TOKEN", lambda: "npm_" + rnd(B62, 36), 5)
for _ in range(3):
    s = "npm_" + rnd(B62, 36)
    add("registry", "npm-token", s, f"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={s}\nalways-auth=true")
for _ in range(2):
    s = b64(24)
    add("registry", "npmrc-auth", s, f"//npm.pkg.github.com/:_auth={s}\nemail=ci@acme.io")
p("registry", "pypi-token", "TWINE_PASSWORD", lambda: "pypi-AgEIcHlwaS5vcmc" + rnd(URL, 120), 3)
for _ in range(2):
    s = "pypi-AgEIcHlwaS5vcmc" + rnd(URL, 140)
    add("registry", "pypi-token", s, f"[pypi]\n  username = __token__\n  password = {s}")
p("registry", "rubygems-token", "GEM_HOST_API_KEY", lambda: "rubygems_" + rnd(HEX, 48), 3, "API key")
p("registry", "nuget-api-key", "NUGET_API_KEY", lambda: "oy2" + rnd(LO + DIG, 43), 3, "API key")
for _ in range(2):
    s = "oy2" + rnd(LO + DIG, 43)
    add("registry", "nuget-api-key", s, f"dotnet nuget push bin/Release/Acme.Core.2.1.0.nupkg --api-key {s} --source https://api.nuget.org/v3/index.json")
p("registry", "docker-hub-token", "DOCKERHUB_TOKEN", lambda: "dckr_pat_" + rnd(URL, 27), 3)
for _ in range(2):
    s = "dckr_pat_" + rnd(URL, 27)
    add("registry", "docker-hub-token", s, f"echo {s} | docker login -u acmebot --password-stdin")
p("registry", "crates-io-token", "CARGO_REGISTRY_TOKEN", lambda: "cio" + rnd(B62, 32), 3)
for _ in range(2):
    s = "cio" + rnd(B62, 32)
    add("registry", "crates-io-token", s, f"[registry]\ntoken = \"{s}\"")
p("registry", "artifactory-token", "ARTIFACTORY_API_KEY", lambda: R.choice(["AKCp" + rnd(B62, 69), "cmVmdGtuOjAxOjE3" + rnd(B62, 48)]), 4, "API key")
p("registry", "clojars-token", "CLOJARS_PASSWORD", lambda: "CLOJARS_" + rnd(LO + DIG, 60), 2)

# ------------------------------------------------------------------ AI providers
p("ai", "openai-api-key", "OPENAI_API_KEY", lambda: R.choice(["sk-proj-" + rnd(URL, 156), "sk-" + rnd(B62, 20) + "T3BlbkFJ" + rnd(B62, 20), "sk-svcacct-" + rnd(URL, 120)]), 7, "API key")
p("ai", "openai-api-key", "OPENROUTER_API_KEY", lambda: "sk-or-v1-" + rnd(HEX, 64), 2, "API key")
p("ai", "openai-api-key", "DEEPSEEK_API_KEY", lambda: "sk-" + rnd(HEX, 32), 2, "API key")
p("ai", "anthropic-api-key", "ANTHROPIC_API_KEY", lambda: "sk-ant-api03-" + rnd(URL, 93) + "AA", 6, "API key")
p("ai", "anthropic-api-key", "ANTHROPIC_ADMIN_KEY", lambda: "sk-ant-admin01-" + rnd(URL, 93) + "AA", 2, "admin key")
p("ai", "huggingface-token", "HF_TOKEN", lambda: "hf_" + rnd(UP + LO, 34), 5)
for _ in range(2):
    s = "hf_" + rnd(UP + LO, 34)
    add("ai", "huggingface-token", s, f"$ huggingface-cli login --token {s}\nToken is valid (permission: write).")
p("ai", "groq-api-key", "GROQ_API_KEY", lambda: "gsk_" + rnd(B62, 52), 3, "API key")
p("ai", "replicate-token", "REPLICATE_API_TOKEN", lambda: "r8_" + rnd(B62, 37), 3)
p("ai", "perplexity-api-key", "PERPLEXITY_API_KEY", lambda: "pplx-" + rnd(B62, 48), 2, "API key")
p("ai", "xai-api-key", "XAI_API_KEY", lambda: "xai-" + rnd(B62, 80), 2, "API key")
p("ai", "langsmith-api-key", "LANGSMITH_API_KEY", lambda: "lsv2_" + R.choice(["pt", "sk"]) + "_" + rnd(HEX, 32) + "_" + rnd(HEX, 10), 2, "API key")
for name in ["COHERE_API_KEY", "MISTRAL_API_KEY", "TOGETHER_API_KEY", "PINECONE_API_KEY", "VOYAGE_API_KEY"]:
    for i in R.sample([0, 1, 2, 3, 4, 7], 2):
        s = rnd(B62, R.choice([32, 40])) if name != "TOGETHER_API_KEY" else rnd(HEX, 64)
        add("ai", "ai-api-key-near", s, contexts(name, s, "API key")[i])

# ------------------------------------------------------------------ observability, SaaS
for _ in range(6):
    s = rnd(HEX, R.choice([32, 40]))
    add("observability-saas", "datadog-api-key", s, R.choice([f"DD_API_KEY={s}", f"DD_APP_KEY={s}", f"datadog:\n  apiKey: {s}\n  site: datadoghq.eu",
                                                              f"helm install datadog-agent --set datadog.apiKey={s} datadog/datadog"]))
p("observability-saas", "new-relic-key", "NEW_RELIC_API_KEY", lambda: "NRAK-" + rnd(UP + DIG, 27), 3, "API key")
p("observability-saas", "new-relic-key", "NEW_RELIC_INSERT_KEY", lambda: "NRII-" + rnd(URL, 32), 2, "insert key")
p("observability-saas", "new-relic-key", "NEW_RELIC_LICENSE_KEY", lambda: rnd(HEX, 36) + "NRAL", 2, "license key")
p("observability-saas", "sentry-token", "SENTRY_AUTH_TOKEN", lambda: "sntrys_" + base64.b64encode(f'{{"iat":{R.randint(10**9, 2 * 10**9)},"url":"https://sentry.io","org":"acme"}}'.encode()).decode().rstrip("=") + "_" + rnd(B62, 43), 3)
p("observability-saas", "sentry-token", "SENTRY_AUTH_TOKEN", lambda: "sntryu_" + rnd(HEX, 64), 2)
p("observability-saas", "grafana-token", "GRAFANA_TOKEN", lambda: R.choice(["glc_" + b64(60), "glsa_" + rnd(B62, 32) + "_" + rnd(HEX, 8)]), 4)
p("observability-saas", "dynatrace-token", "DT_API_TOKEN", lambda: "dt0c01." + rnd(UP + DIG, 24) + "." + rnd(UP + DIG, 64), 2)
for name, make in [("PAGERDUTY_TOKEN", lambda: rnd(URL, 20)), ("ROLLBAR_ACCESS_TOKEN", lambda: rnd(HEX, 32)), ("OKTA_API_TOKEN", lambda: "00" + rnd(URL, 40)),
                   ("ZENDESK_API_TOKEN", lambda: rnd(B62, 40)), ("ASANA_TOKEN", lambda: rnd(HEX, 32)),
                   ("ALGOLIA_ADMIN_KEY", lambda: rnd(HEX, 32)), ("SNYK_TOKEN", uuid), ("SPLUNK_HEC_TOKEN", uuid), ("MAPBOX_TOKEN", lambda: rnd(B62, 32)),
                   ("TWITTER_CONSUMER_SECRET", lambda: rnd(B62, 50)), ("HUBSPOT_API_KEY", uuid), ("INTERCOM_TOKEN", lambda: rnd(URL, 40))]:
    for i in R.sample([0, 1, 2, 3, 4], 2):
        s = make()
        add("observability-saas", "saas-token-near", s, contexts(name, s)[i])
for make in [lambda: "lin_api_" + rnd(B62, 40), lambda: "secret_" + rnd(B62, 43), lambda: "ntn_" + rnd(DIG, 11) + rnd(B62, 35), lambda: "figd_" + rnd(URL, 40),
             lambda: "PMAK-" + rnd(HEX, 24) + "-" + rnd(HEX, 34), lambda: "CFPAT-" + rnd(URL, 43), lambda: "pat" + rnd(B62, 14) + "." + rnd(HEX, 64),
             lambda: "ico-" + rnd(B62, 32), lambda: "tfp_" + rnd(URL, 44), lambda: "sl." + rnd(URL, 138), lambda: "A" * 22 + rnd(B62 + "%", 90),
             lambda: "shippo_live_" + rnd(HEX, 40), lambda: "dapi" + rnd(HEX, 32)]:
    s = make()
    add("observability-saas", "saas-prefixed-token", s, contexts("SERVICE_TOKEN", s)[R.choice([0, 1, 3, 4, 7])])

for name, make in [("BREVO_API_KEY", lambda: "xkeysib-" + rnd(HEX, 64) + "-" + rnd(B62, 16)), ("SRC_ACCESS_TOKEN", lambda: "sgp_" + rnd(HEX, 16) + "_" + rnd(HEX, 40)),
                   ("PREFECT_API_KEY", lambda: "pnu_" + rnd(B62, 36)), ("HARNESS_PLATFORM_API_KEY", lambda: "pat." + rnd(URL, 22) + "." + rnd(HEX, 24) + "." + rnd(B62, 20)),
                   ("SCALINGO_API_TOKEN", lambda: "tk-us-" + rnd(URL, 48)), ("README_API_KEY", lambda: "rdme_" + rnd(LO + DIG, 70)),
                   ("SETTLEMINT_ACCESS_TOKEN", lambda: "sm_pat_" + rnd(B62, 16)), ("EASYPOST_API_KEY", lambda: "EZAK" + rnd(B62, 54)),
                   ("DUFFEL_ACCESS_TOKEN", lambda: "duffel_live_" + rnd(URL, 43)), ("FRAMEIO_TOKEN", lambda: "fio-u-" + rnd(URL, 64)),
                   ("OPENSHIFT_TOKEN", lambda: "sha256~" + rnd(URL, 43)), ("ADOBE_CLIENT_SECRET", lambda: "p8e-" + rnd(B62, 32)),
                   ("DN_API_KEY", lambda: "dnkey-" + rnd(LO + DIG, 26) + "-" + rnd(LO + DIG, 52)), ("FT_SECRET", lambda: "s-s4t2ud-" + rnd(HEX, 64)),
                   ("YC_API_KEY", lambda: "AQVN" + rnd(URL, 36)), ("OCTOPUS_API_KEY", lambda: "API-" + rnd(UP + DIG, 26))]:
    s = make()
    add("observability-saas", "service-prefixed-token", s, contexts(name, s)[R.choice([0, 1, 2, 3, 4, 5, 7])])

# ------------------------------------------------------------------ keyword-anchored (the format alone is ambiguous)
for _ in range(4):
    s = "key" + rnd(B62, 14)
    add("keyword-anchored", "saas-token-near", s, R.choice([f"AIRTABLE_API_KEY={s}", f"# Airtable API key\nkey: {s}", f"airtable:\n  base: app{rnd(B62, 14)}\n  key: {s}",
                                                           f'{{"airtable": {{"apiKey": "{s}"}}}}']))
for _ in range(6):
    s = rnd(URL, R.choice([24, 32, 40]))
    add("keyword-anchored", "password-assignment", s, R.choice([f'{{\n  "client_id": "{rnd(DIG, 12)}",\n  "client_secret": "{s}"\n}}', f"client_secret: {s}",
                                                               f"OAUTH_CLIENT_SECRET={s}", f"[oauth]\nclient_id = acme-web\nclient_secret = {s}"]))
for _ in range(3):
    u = uuid()
    add("keyword-anchored", "heroku-api-key", u, R.choice([f"# Heroku\n{u}", f"heroku_api_key = {u}", f"The Heroku key is {u}, rotate it monthly."]))

# ------------------------------------------------------------------ private keys
def pem(kind, lines=8):
    body = [b64(48) for _ in range(lines)]
    return body, f"-----BEGIN {kind}-----\n" + "\n".join(body) + f"\n-----END {kind}-----"


for kind in ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]:
    for ctx in range(2):
        body, block = pem(kind)
        if kind == "PGP PRIVATE KEY BLOCK":
            block = block.replace("BLOCK-----\n", "BLOCK-----\nVersion: GnuPG v2\n\n", 1)
        wrap = [f"$ cat ~/.ssh/id_deploy\n{block}", f"```\n{block}\n```\n\nThat is the key the deploy job uses."][ctx]
        add("private-key", "private-key", body[3], wrap)
for _ in range(2):
    body = "\\n".join(b64(48) for _ in range(6))
    add("private-key", "private-key", body.split("\\n")[2], f'  "private_key": "-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n",')
for _ in range(2):
    lines = [b64(48) for _ in range(6)]
    ppk = ("PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: rsa-key-20240502\nPublic-Lines: 2\n" + b64(48) + "\n" + b64(20) +
           "\nPrivate-Lines: 6\n" + "\n".join(lines) + "\nPrivate-MAC: " + rnd(HEX, 64))
    add("private-key", "putty-private-key", lines[2], ppk)
for _ in range(2):
    s = "AGE-SECRET-KEY-1" + "".join(R.choice("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L") for _ in range(58))
    add("private-key", "age-secret-key", s, f"# created: 2024-05-02T10:14:07Z\n# public key: age1{rnd(LO + DIG, 58)}\n{s}")

# ------------------------------------------------------------------ JWTs
def jwt():
    h = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    body = f'{{"sub":"{R.randint(1000, 99999)}","name":"svc-{rnd(LO, 6)}","iat":{R.randint(1_600_000_000, 1_800_000_000)},"scope":"read write"}}'
    pl = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    return f"{h}.{pl}.{rnd(URL, 43)}"


for i in range(12):
    s = jwt()
    add("jwt", "jwt", s, [f"Authorization: Bearer {s}", f"curl -H 'Authorization: Bearer {s}' https://api.acme.io/v1/me",
                          f"SESSION_JWT={s}", f'{{"access_token": "{s}", "expires_in": 3600}}', f"Cookie: session={s}; Path=/",
                          f"I decoded the token {s} and the scope was wrong.", f"jwt: {s}", f"token = \"{s}\"",
                          f"ws.send(JSON.stringify({{ type: 'auth', jwt: '{s}' }}))", f"?access_token={s}&format=json",
                          f"  id_token: {s}\n  refresh_token: {rnd(URL, 40)}", f"| 2024-05-02 | {s} | admin |"][i])

# ------------------------------------------------------------------ URLs and connection strings with credentials
for i in range(12):
    pw = rnd(B62 + "!*-_~", R.choice([12, 16, 24]))
    user = R.choice(["app", "admin", "postgres", "svc_api", "deploy", "root"])
    t = [f"DATABASE_URL=postgres://{user}:{pw}@db.internal:5432/app", f"postgresql://{user}:{pw}@10.0.3.12/analytics?sslmode=require",
         f"MONGO_URI=mongodb+srv://{user}:{pw}@cluster0.ab1cd.mongodb.net/prod", f"redis://:{pw}@cache.internal:6379/0",
         f"amqp://{user}:{pw}@rabbit:5672/%2f", f"mysql://{user}:{pw}@mysql.prod:3306/shop",
         f"spring.datasource.url=jdbc:postgresql://db:5432/app\nspring.datasource.password={pw}",
         f"$ git clone https://{user}:{pw}@git.acme.io/platform/api.git", f"proxy = http://{user}:{pw}@proxy.corp:3128",
         f"sqlalchemy.url = postgresql+psycopg2://{user}:{pw}@localhost/orders", f"CELERY_BROKER_URL=redis://default:{pw}@redis-123.cloud:6379",
         f"ftp://{user}:{pw}@files.acme.io/upload"][i]
    add("url-credentials", "password-assignment" if i == 6 else "url-password", pw, t)

# ------------------------------------------------------------------ headers, curl
for i in range(10):
    user = R.choice(["api", "deploy", "ci-bot"])
    pw = rnd(B62, 20)
    basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
    bearer = rnd(URL, 40)
    t, s, rule = [
        (f"Authorization: Basic {basic}", basic, "authorization-header"),
        (f"curl -H \"Authorization: Bearer {bearer}\" https://api.acme.io/v2/orders", bearer, "authorization-header"),
        (f"curl -u {user}:{pw} https://ci.acme.io/api/json", pw, "curl-user"),
        (f"curl --user '{user}:{pw}' -X POST https://registry.acme.io/v2/token", pw, "curl-user"),
        (f"headers = {{\"Authorization\": \"Bearer {bearer}\"}}", bearer, "authorization-header"),
        (f"curl -H 'X-API-Key: {bearer}' https://api.acme.io/v1/items", bearer, "api-key-header"),
        (f"> GET /api/v4/projects HTTP/1.1\n> PRIVATE-TOKEN: {bearer}", bearer, "api-key-header"),
        (f"fetch(url, {{ headers: {{ 'Authorization': `Basic {basic}` }} }})", basic, "authorization-header"),
        (f"http --auth {user}:{pw} GET https://api.acme.io/me", pw, "password-assignment"),
        (f"wget --header=\"Authorization: Token {bearer}\" https://api.acme.io/export.csv", bearer, "authorization-header"),
    ][i]
    if rule == "password-assignment":
        t = f"API_PASSWORD={pw}\nhttp --auth {user}:$API_PASSWORD GET https://api.acme.io/me"
    add("auth-header", rule, s, t)

# ------------------------------------------------------------------ Kubernetes Secret manifests
for i in range(10):
    vals = [base64.b64encode(rnd(B62 + "!#%", R.choice([12, 20, 32])).encode()).decode() for _ in range(2)]
    sep = ["", "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  LOG_LEVEL: info\n---\n",
           "# kubectl get secret db-credentials -o yaml\n"][i % 3]
    t = (f"{sep}apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\n  namespace: production\ntype: Opaque\n"
         f"data:\n  username: {base64.b64encode(b'app_user').decode()}\n  password: {vals[0]}\n  api-token: {vals[1]}")
    add("k8s-secret", "kubernetes-secret", vals[i % 2], t)

# ------------------------------------------------------------------ generic: high-entropy values under secret-sounding names
for i in range(16):
    s = rnd(R.choice([B62, HEX, URL]), R.choice([20, 32, 40, 48]))
    name = R.choice(["SECRET_KEY", "APP_SECRET", "api_key", "signing_key", "encryption_key", "session_secret", "WEBHOOK_SECRET", "auth_token",
                     "access_token", "private_token", "JWT_SECRET", "COOKIE_SECRET", "master_key", "client_key", "apiKey", "secretKey"])
    t = [f"{name}={s}", f"{name}: \"{s}\"", f'"{name}": "{s}",', f"{name} = '{s}'", f"config.{name} = \"{s}\"", f"  {name}: {s}",
         f"Rails.application.credentials.{name} = '{s}'", f"export {name}={s}", f"{name} := \"{s}\"", f"<add key=\"{name}\" value=\"{s}\" />",
         f"--{name.lower().replace('_', '-')}={s}", f"{name}={s}  # rotated 2024-04", f"set {name}={s}", f"${name} = \"{s}\";",
         f"{name.upper()}: {s}", f"'{name}' => '{s}',"][i]
    add("generic", "xml-key-value" if t.startswith("<add") else "generic-api-key", s, t)
for i in range(14):
    s = rnd(B62 + "!#%&*+-_.?@^~", R.choice([10, 12, 16, 20]))
    t = [f"DB_PASSWORD={s}", f"password: \"{s}\"", f'"password": "{s}",', f"spring.datasource.password={s}", f"PGPASSWORD={s} psql -h db -U app",
         f"mysql -u root -p'{s}' shop", f"smtp_pass = \"{s}\"", f"  redis_password: {s}", f"passwd={s}", f"ADMIN_PASS='{s}'",
         f"<password>{s}</password>", f"pwd = \"{s}\"", f"secret: {s}", f"RABBITMQ_DEFAULT_PASS={s}"][i]
    rule = "password-assignment"
    if i == 5:
        t = f"mysql -u root --password='{s}' shop"
    if i == 10:
        t = f"db_password = \"{s}\""
    add("generic", rule, s, t)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "positives.txt"), "w", encoding="utf-8") as f:
    f.write("# Generated by make_corpus.py: fake secrets of documented formats in realistic contexts.\n"
            "# Each case: `### <family> <rule> <secret>` then its text, up to the next `###` line.\n\n")
    for family, rule, secret, text in cases:
        f.write(f"### {family} {rule} {secret}\n{text}\n\n")
print(len(cases), "cases")
