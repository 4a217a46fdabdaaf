// The sessionpool web console: sign-in, then pools, a pool's sessions, a playground per pool and a health view,
// routed by the URL's fragment (the server serves one page at `/`).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  Api,
  type Credential,
  DEFAULT_SUBSCRIPTION,
  forgetCredential,
  loadCredential,
  saveCredential,
} from "./api.ts";
import { HealthView, MetricsHistory } from "./health.tsx";
import { PlaygroundView } from "./playground.tsx";
import { PoolsView } from "./pools.tsx";
import { SessionsView } from "./sessions.tsx";
import "./styles.css";
import { ErrorBanner, Field } from "./ui.tsx";
import { useSubmit } from "./util.ts";

type Route =
  | { view: "pools" }
  | { view: "health" }
  | { view: "sessions" | "playground"; resourceGroup: string; name: string };

function routeOf(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "health") return { view: "health" };
  if (parts[0] === "pools" && parts.length === 4 && (parts[3] === "sessions" || parts[3] === "playground")) {
    return { view: parts[3], resourceGroup: parts[1]!, name: parts[2]! };
  }
  return { view: "pools" };
}

function SignIn({ onSignedIn }: { onSignedIn: (api: Api) => void }) {
  const [token, setToken] = useState("");
  const [subscription, setSubscription] = useState(DEFAULT_SUBSCRIPTION);
  const [remember, setRemember] = useState(false);
  const { error, busy, submit } = useSubmit(async () => {
    const cred: Credential = { token: token.trim(), subscription: subscription.trim() };
    const api = new Api(cred);
    // Proves the token against the management API before keeping it.
    await api.arm("GET", `${api.poolsPath()}`);
    saveCredential(cred, remember);
    onSignedIn(api);
  });
  return (
    <main class="signin">
      <h1>sessionpool</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <Field
          label="Admin token"
          type="password"
          name="token"
          autocomplete="off"
          required
          value={token}
          onInput={setToken}
        />
        <p class="hint">
          The server prints where it keeps it: <code>.sessionpool/admin-token</code> by default.
        </p>
        <Field
          label="Subscription"
          name="subscription"
          required
          value={subscription}
          onInput={setSubscription}
        />
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
          Remember on this device
        </label>
        <ErrorBanner error={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function App() {
  const [api, setApi] = useState<Api | undefined>(() => {
    const cred = loadCredential();
    return cred ? new Api(cred) : undefined;
  });
  const [route, setRoute] = useState(() => routeOf(location.hash));
  const [history] = useState(() => new MetricsHistory());

  useEffect(() => {
    const onHash = () => setRoute(routeOf(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => {
    if (api === undefined) return;
    history.start(api);
    return () => history.stop();
  }, [api, history]);

  if (api === undefined) return <SignIn onSignedIn={setApi} />;
  const signOut = () => {
    forgetCredential();
    history.clear();
    setApi(undefined);
  };
  const current = (view: Route["view"]) => (route.view === view ? "page" : undefined);
  return (
    <>
      <header>
        <span class="brand">sessionpool</span>
        <nav aria-label="Main">
          <a href="#/pools" aria-current={current("pools")}>
            Pools
          </a>
          <a href="#/health" aria-current={current("health")}>
            Health
          </a>
        </nav>
        <span class="who">subscription {api.cred.subscription}</span>
        <button type="button" class="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {route.view === "pools" && <PoolsView api={api} />}
        {route.view === "health" && <HealthView api={api} history={history} />}
        {route.view === "sessions" && (
          <SessionsView api={api} resourceGroup={route.resourceGroup} name={route.name} />
        )}
        {route.view === "playground" && (
          <PlaygroundView api={api} resourceGroup={route.resourceGroup} name={route.name} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
