// The playground's code editor: CodeMirror 6 (bundled) with Python, JavaScript or shell highlighting by pool
// type, and Ctrl+Enter (Cmd+Enter on a Mac) to run.
import { javascript } from "@codemirror/lang-javascript";
import { python } from "@codemirror/lang-python";
import { StreamLanguage } from "@codemirror/language";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { useEffect, useRef } from "preact/hooks";

const THEME = EditorView.theme({
  "&": { minHeight: "9rem", maxHeight: "22rem", backgroundColor: "var(--panel)", color: "var(--fg)" },
  ".cm-scroller": {
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: "0.9rem",
  },
  ".cm-gutters": { backgroundColor: "var(--bg)", color: "var(--muted)", borderColor: "var(--line)" },
});

export type EditorLanguage = "python" | "javascript" | "shell";

export function languageOf(containerType: string): EditorLanguage {
  return containerType === "NodeLTS" ? "javascript" : containerType === "Shell" ? "shell" : "python";
}

function support(language: EditorLanguage) {
  if (language === "javascript") return javascript();
  if (language === "shell") return StreamLanguage.define(shell);
  return python();
}

export interface EditorHandle {
  text(): string;
}

export function CodeEditor(props: {
  language: EditorLanguage;
  initial: string;
  label: string;
  onRun: () => void;
  handle: { current: EditorHandle | null };
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView>(null);
  const lang = useRef(new Compartment());
  const onRun = useRef(props.onRun);
  onRun.current = props.onRun;

  useEffect(() => {
    // In a shadow root CodeMirror's styles are constructed style sheets (adoptedStyleSheets); in the document they
    // would be a <style> element, which the console's content security policy (style-src 'self') refuses.
    const root = host.current!.shadowRoot ?? host.current!.attachShadow({ mode: "open" });
    const v = new EditorView({
      parent: root,
      root,
      state: EditorState.create({
        doc: props.initial,
        extensions: [
          Prec.highest(
            keymap.of([
              {
                key: "Ctrl-Enter",
                mac: "Cmd-Enter",
                run: () => {
                  onRun.current();
                  return true;
                },
              },
            ]),
          ),
          basicSetup,
          THEME,
          lang.current.of(support(props.language)),
          EditorView.contentAttributes.of({ "aria-label": props.label }),
        ],
      }),
    });
    view.current = v;
    props.handle.current = { text: () => v.state.doc.toString() };
    return () => {
      v.destroy();
      props.handle.current = null;
    };
  }, []);

  useEffect(() => {
    view.current?.dispatch({ effects: lang.current.reconfigure(support(props.language)) });
  }, [props.language]);

  return <div class="editor" ref={host} />;
}
