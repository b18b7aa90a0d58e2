"""
Prices in the product as an operator runs it: a live ``twistd dd0c-route``
with the fake provider upstream, the official ``openai`` SDK as client.  A
model only the genai-prices dataset knows gets a priced record naming the
dataset; an override in config changes the price and the record says
``config``; ``dd0c-route check`` and ``dd0c-route prices`` tell the same story.
"""

from __future__ import annotations

import json
import os
import tempfile
from decimal import Decimal
from importlib import metadata

import openai
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .twistd_proc import Twistd, free_port, run_cli, write_config


class TwistdPricesTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_dataset_and_override_price_live_records(self):
        """gpt-5.4 is priced by the dataset; gpt-5.1's config override wins; check warns for the unpriced model."""
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        workdir = tempfile.mkdtemp(prefix="dd0c-prices-")
        port = free_port()
        config = write_config(
            workdir, port,
            f'[providers.openai]\nbase_url = "{fake.base_url}"\napi_key_env = "DD0C_TEST_PROVIDER_KEY"\n'
            'models = ["gpt-5.4", "gpt-5.1", "zz-unpriced-1"]\n'
            '[prices."gpt-5.1"]\ninput = "1"\noutput = "2"\n',
        )
        os.environ["DD0C_TEST_PROVIDER_KEY"] = provider_key
        self.addCleanup(os.environ.pop, "DD0C_TEST_PROVIDER_KEY", None)
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "prices")
        self.assertEqual(created.returncode, 0, created.stderr)
        key = created.stdout.strip().splitlines()[-1]

        check = yield in_thread(run_cli, "--config", config, "check")
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("OK", check.stdout)
        self.assertIn("'zz-unpriced-1'", check.stderr)
        self.assertNotIn("'gpt-5.4'", check.stderr)
        shown = yield in_thread(run_cli, "--config", config, "prices", "gpt-5.4", "openai/gpt-5.1")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        source = f"genai-prices {metadata.version('genai-prices')}"
        self.assertIn(f"gpt-5.4: gpt-5.4, source {source}", shown.stdout)
        self.assertIn("gpt-5.1 via openai: gpt-5.1, source config", shown.stdout)

        proc = Twistd(config, workdir, os.path.join(workdir, "twistd.log"), port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=20)
        self.addCleanup(client.close)
        for model in ("gpt-5.4", "gpt-5.1", "zz-unpriced-1"):
            yield in_thread(
                lambda model=model: client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "price me please"}]
                )
            )
        yield in_thread(proc.stop)

        usage = yield in_thread(run_cli, "--config", config, "usage", "--json")
        self.assertEqual(usage.returncode, 0, usage.stderr)
        records = {r["model"]: r for r in map(json.loads, usage.stdout.splitlines()) if r["status"] == 200}
        dataset, override, unpriced = records["gpt-5.4"], records["gpt-5.1"], records["zz-unpriced-1"]
        self.assertEqual((dataset["price_source"], dataset["price_tier"]), (source, "standard"))
        self.assertEqual(
            Decimal(dataset["cost_usd"]),
            (Decimal("2.5") * dataset["prompt_tokens"] + 15 * dataset["completion_tokens"]) / 10**6,
        )
        self.assertEqual((override["price_source"], override["price_tier"]), ("config", "standard"))
        self.assertEqual(
            Decimal(override["cost_usd"]), (Decimal(1) * override["prompt_tokens"] + 2 * override["completion_tokens"]) / 10**6
        )
        self.assertEqual((unpriced["cost_usd"], unpriced["price_source"], unpriced["price_tier"]), (None, None, None))
        table = yield in_thread(run_cli, "--config", config, "usage")
        self.assertIn("Models without a price (cost_usd null): zz-unpriced-1", table.stdout)
